/* SPDX-License-Identifier: MIT */
/*
 * qemu: a tap device on a host bridge, made by the daemon and handed to
 * QEMU as an open fd (see qemu.h).
 */
#include "qemu/qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "qemu/qemu-internal.h"

/* ioctl on the interface named name; 0 or -errno. */
static int if_ioctl(int s, unsigned long req, const char *name, struct ifreq *ifr)
{
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
	return ioctl(s, req, ifr) < 0 ? -errno : 0;
}

static int hexval(char ch)
{
	return ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10;
}

int qemu_tap_open(const char *bridge, const char *guest_mac, char ifname[QEMU_IFNAME_MAX],
		  char *err, size_t errlen)
{
	char path[64];
	struct ifreq ifr;
	struct stat st;
	int fd = -1, s = -1, r, br_mtu;

	/* A bridge, not any interface: a guest must not be put on eth0's link. */
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", bridge);
	if (strlen(bridge) >= IFNAMSIZ || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		qemu__seterr(err, errlen, "there is no bridge '%s' on this host", bridge);
		return -ENODEV;
	}
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		r = -errno;
		qemu__seterr(err, errlen, "socket: %s", strerror(-r));
		return r;
	}
	memset(&ifr, 0, sizeof(ifr));
	r = if_ioctl(s, SIOCGIFMTU, bridge, &ifr);
	if (r < 0) {
		qemu__seterr(err, errlen, "bridge '%s': %s", bridge, strerror(-r));
		goto fail;
	}
	br_mtu = ifr.ifr_mtu;

	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		qemu__seterr(err, errlen, "cannot open /dev/net/tun: %s", strerror(-r));
		goto fail;
	}
	/* Not persistent: the device goes when its last fd (QEMU's) closes. */
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "crl%%d");
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		r = -errno;
		qemu__seterr(err, errlen, "cannot create a tap device: %s%s", strerror(-r),
			     r == -EPERM ? " (bridged NICs need corrald to run as root)" : "");
		goto fail;
	}
	snprintf(ifname, QEMU_IFNAME_MAX, "%s", ifr.ifr_name);

	/*
	 * The host side's own address: the guest's with the first octet 0xfe.
	 * A bridge takes the lowest address of its ports as its own, and a
	 * high one never displaces the bridge's.
	 */
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
	ifr.ifr_hwaddr.sa_data[0] = (char)0xfe;
	for (int i = 1; i < 6; i++)
		ifr.ifr_hwaddr.sa_data[i] = (char)(hexval(guest_mac[3 * i]) << 4 |
						   hexval(guest_mac[3 * i + 1]));
	r = if_ioctl(s, SIOCSIFHWADDR, ifname, &ifr);
	if (r == 0) {
		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_mtu = br_mtu;
		r = if_ioctl(s, SIOCSIFMTU, ifname, &ifr);
	}
	if (r == 0) {
		memset(&ifr, 0, sizeof(ifr));
		r = if_ioctl(s, SIOCGIFINDEX, ifname, &ifr);
	}
	if (r == 0) {
		int index = ifr.ifr_ifindex;

		memset(&ifr, 0, sizeof(ifr));
		ifr.ifr_ifindex = index;
		r = if_ioctl(s, SIOCBRADDIF, bridge, &ifr);
		if (r < 0) {
			qemu__seterr(err, errlen, "cannot add tap %s to bridge '%s': %s", ifname,
				     bridge, strerror(-r));
			goto fail;
		}
	}
	if (r == 0) {
		memset(&ifr, 0, sizeof(ifr));
		r = if_ioctl(s, SIOCGIFFLAGS, ifname, &ifr);
		ifr.ifr_flags |= IFF_UP;
		if (r == 0)
			r = if_ioctl(s, SIOCSIFFLAGS, ifname, &ifr);
	}
	if (r < 0) {
		qemu__seterr(err, errlen, "cannot set up tap %s: %s", ifname, strerror(-r));
		goto fail;
	}
	close(s);
	return fd;

fail:
	if (fd >= 0)
		close(fd);
	close(s);
	return r;
}
