/* SPDX-License-Identifier: MIT */
/*
 * qemu/image: what a disk image is, read from its first bytes by the
 * daemon, so that QEMU never guesses.
 *
 * QEMU would probe an image whose format it is not told, and a guest that
 * writes a qcow2 header into its raw disk would then make QEMU open a host
 * file named in that header at the next boot.  corral always gives QEMU the
 * format; this module decides which one, from the header, through an fd the
 * daemon opened (never a path QEMU opens):
 *
 *   - no format declared: the detected one (raw when no known header);
 *   - a format declared: the header must agree, or the disk is refused
 *     ("declared raw, but the image is qcow2");
 *   - qcow2 with a backing file or an external data file: refused (QEMU
 *     would open another host file on its own); flatten it first
 *     (qemu-img convert) or give a standalone image;
 *   - a header of a format corral does not run (vmdk, vdi, vhdx, vpc, qed,
 *     luks, qcow version 1, ...): refused, naming it.
 *
 * Pure reads of a few KiB at fixed offsets (pread); any thread that may
 * block on a disk.  The module never prints.
 */
#ifndef CORRAL_QEMU_IMAGE_H
#define CORRAL_QEMU_IMAGE_H

#include <stddef.h>

/*
 * Check the image open at fd against declared ("raw", "qcow2" or NULL for
 * none) and put the format QEMU must be told in *ret (a static string).
 * 0; -EINVAL with a reason in err (format mismatch, backing file, a format
 * not supported); -errno of a failed read.  path is only for messages.
 */
int qemu_image_probe(int fd, const char *path, const char *declared, const char **ret,
		     char *err, size_t errlen);

/*
 * The format named by the header in buf[0..len) ("qcow2", "vmdk", ...),
 * or "raw" when none is recognised.  Exposed for tests and fuzzing.
 */
const char *qemu_image_sniff(const unsigned char *buf, size_t len);

#endif /* CORRAL_QEMU_IMAGE_H */
