/* SPDX-License-Identifier: MIT */
/*
 * Disk image headers.  See image.h.  The layouts below are the published
 * on-disk formats (big-endian unless said otherwise); only the fields
 * needed to name the format and to find references to other files are
 * read.
 */
#include "qemu/image.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "qemu/qemu-internal.h"

#define HEADER_BYTES 4096

/* qcow2 header fields (version 2 and 3). */
#define QCOW2_MAGIC             "QFI\xfb"
#define QCOW2_OFF_VERSION       4       /* u32 */
#define QCOW2_OFF_BACKING_OFF   8       /* u64: 0 when there is no backing file */
#define QCOW2_OFF_BACKING_LEN   16      /* u32 */
#define QCOW2_OFF_INCOMPAT      72      /* u64, version 3 only */
#define QCOW2_OFF_HDR_LEN       100     /* u32, version 3 only */
#define QCOW2_V2_HDR_LEN        72
#define QCOW2_INCOMPAT_DATAFILE (1ull << 2)
#define QCOW2_EXT_DATAFILE      0x44415441u     /* "DATA": external data file name */
#define QCOW2_EXT_BACKING_FMT   0xe2792acau

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static bool has(const unsigned char *buf, size_t len, size_t off, const char *magic, size_t n)
{
	return len >= off + n && memcmp(buf + off, magic, n) == 0;
}

const char *qemu_image_sniff(const unsigned char *buf, size_t len)
{
	if (has(buf, len, 0, QCOW2_MAGIC, 4) && len >= 8)
		return be32(buf + QCOW2_OFF_VERSION) >= 2 ? "qcow2" : "qcow";
	if (has(buf, len, 0, "QED\0", 4))
		return "qed";
	if (has(buf, len, 0, "KDMV", 4) || has(buf, len, 0, "COWD", 4) ||
	    has(buf, len, 0, "# Disk DescriptorFile", 21))
		return "vmdk";
	if (has(buf, len, 64, "\x7f\x10\xda\xbe", 4))     /* little-endian signature */
		return "vdi";
	if (has(buf, len, 0, "vhdxfile", 8))
		return "vhdx";
	if (has(buf, len, 0, "conectix", 8))
		return "vpc";
	if (has(buf, len, 0, "LUKS\xba\xbe", 6))
		return "luks";
	if (has(buf, len, 0, "WithoutFreeSpace", 16) || has(buf, len, 0, "WithouFreSpacExt", 16))
		return "parallels";
	if (has(buf, len, 0, "Bochs Virtual HD Image", 22))
		return "bochs";
	if (has(buf, len, 0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop", 37))
		return "cloop";
	return "raw";
}

/*
 * A qcow2 image must name no other file: no backing file in the header,
 * no external data file (incompatible feature bit, or its header
 * extension).  0 or -EINVAL with the reason.
 */
static int qcow2_check(const unsigned char *buf, size_t len, const char *path, char *err,
		       size_t errlen)
{
	char q[QEMU__QUOTE_MAX + 16];
	uint32_t version, hdr_len;
	size_t off;

	qemu__quote(path, strlen(path), q, sizeof(q));
	if (len < QCOW2_V2_HDR_LEN) {
		qemu__seterr(err, errlen, "disk %s: truncated qcow2 header", q);
		return -EINVAL;
	}
	version = be32(buf + QCOW2_OFF_VERSION);
	if (version != 2 && version != 3) {
		qemu__seterr(err, errlen, "disk %s: qcow2 version %u is not supported", q, version);
		return -EINVAL;
	}
	if (be64(buf + QCOW2_OFF_BACKING_OFF) || be32(buf + QCOW2_OFF_BACKING_LEN)) {
		qemu__seterr(err, errlen, "disk %s: the qcow2 image has a backing file; corral does "
			     "not let QEMU open other host files: flatten it with qemu-img convert",
			     q);
		return -EINVAL;
	}
	if (version == 2)
		return 0;
	if (len < QCOW2_OFF_HDR_LEN + 4) {
		qemu__seterr(err, errlen, "disk %s: truncated qcow2 v3 header", q);
		return -EINVAL;
	}
	if (be64(buf + QCOW2_OFF_INCOMPAT) & QCOW2_INCOMPAT_DATAFILE) {
		qemu__seterr(err, errlen, "disk %s: the qcow2 image keeps its data in an external "
			     "file; corral does not let QEMU open other host files", q);
		return -EINVAL;
	}
	/* Header extensions follow the header: type (u32), length (u32), data, padded to 8. */
	hdr_len = be32(buf + QCOW2_OFF_HDR_LEN);
	if (hdr_len < 104 || hdr_len > len) {
		qemu__seterr(err, errlen, "disk %s: bad qcow2 header length %u", q, hdr_len);
		return -EINVAL;
	}
	for (off = hdr_len; off + 8 <= len;) {
		uint32_t type = be32(buf + off), n = be32(buf + off + 4);

		if (type == 0)
			break;  /* end of the extensions */
		if (type == QCOW2_EXT_DATAFILE) {
			qemu__seterr(err, errlen, "disk %s: the qcow2 image names an external data "
				     "file; corral does not let QEMU open other host files", q);
			return -EINVAL;
		}
		if (n > len)
			break;  /* past what we read: QEMU reads it, and refuses garbage */
		off += 8 + (((size_t)n + 7) & ~(size_t)7);
	}
	return 0;
}

int qemu_image_probe(int fd, const char *path, const char *declared, const char **ret,
		     char *err, size_t errlen)
{
	unsigned char buf[HEADER_BYTES];
	char q[QEMU__QUOTE_MAX + 16];
	const char *found;
	size_t len = 0;
	ssize_t n;
	int r;

	while (len < sizeof(buf)) {
		n = pread(fd, buf + len, sizeof(buf) - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			qemu__quote(path, strlen(path), q, sizeof(q));
			qemu__seterr(err, errlen, "disk %s: cannot read its header: %s", q,
				     strerror(-r));
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	found = qemu_image_sniff(buf, len);
	qemu__quote(path, strlen(path), q, sizeof(q));
	if (declared && strcmp(declared, found) != 0) {
		qemu__seterr(err, errlen, "disk %s: declared %s, but the image is %s", q, declared,
			     found);
		return -EINVAL;
	}
	if (!strcmp(found, "qcow2")) {
		r = qcow2_check(buf, len, path, err, errlen);
		if (r < 0)
			return r;
		*ret = "qcow2";
		return 0;
	}
	if (!strcmp(found, "raw")) {
		*ret = "raw";
		return 0;
	}
	qemu__seterr(err, errlen, "disk %s: a %s image; corral runs raw and qcow2 images "
		     "(convert it with qemu-img convert -O qcow2)", q, found);
	return -EINVAL;
}
