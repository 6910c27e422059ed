#!/bin/sh
# Writes the seed corpus for fuzz-config: domain configs as the CLI sends
# them, valid ones touching every field and form of config.h's table, and
# one of each kind of refusal.  Run from anywhere; rewrites
# fuzz/corpus-config/ next to this script.  printf reads the text as a
# format: write \\u for a JSON \u.
set -eu
dir="$(dirname "$0")/corpus-config"
mkdir -p "$dir"
seed() { printf "$2" > "$dir/$1"; }

# ---- accepted
seed minimal        '{"name": "vm1"}'
seed full           '{"name": "web-01", "uuid": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "memory": "2G", "vcpus": 4, "machine": "q35", "accel": "kvm", "emulator": "/usr/bin/qemu-system-x86_64", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0,115200 root=/dev/vda1 quiet", "disks": [{"path": "/var/lib/corral/web-01/root.qcow2", "format": "qcow2"}, {"path": "/srv/data,with,commas,.img", "readonly": true, "format": "raw"}, {"path": "/srv/iso=x,,raw,", "format": "raw"}], "reboot": "acpi"}'
seed memory-mib     '{"name": "m1", "memory": "512MiB", "vcpus": 2}'
seed memory-tib     '{"name": "big", "memory": "1TiB", "vcpus": 256, "accel": "tcg"}'
seed memory-int     '{"name": "small", "memory": 16}'
seed machine-none   '{"name": "probe", "machine": "none", "accel": "tcg", "memory": "64m"}'
seed nulls          '{"name": "n", "uuid": null, "memory": null, "kernel": null, "disks": null, "reboot": null}'
seed disks-forms    '{"name": "d", "disks": ["/img/a.raw", "/img/b,c.raw,ro", {"path": "/img/c,ro", "readonly": false, "format": "raw"}]}'
seed kernel         '{"name": "k", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "", "emulator": "qemu-system-x86_64"}'
seed emulator-abs   '{"name": "e.1_x-2", "emulator": "/opt/qemu,1/bin/qemu", "reboot": "reset"}'
seed uuid-upper     '{"name": "u", "uuid": "6F9619FF-8B86-D011-B42D-00C04FC964FF"}'
# ---- refused
seed unknown-field  '{"name": "vm1", "memroy": 512}'
seed unknown-quoted '{"name": "v", "it'"'"'s": 1}'
seed disk-unknown   '{"name": "v", "disks": [{"path": "/x", "size": 1}]}'
seed ctl-char       '{"name": "vm1", "kernel": "/k", "cmdline": "quiet\\u001b[2J"}'
seed nul-in-name    '{"name": "vm\\u0000x"}'
seed same-image     '{"name": "d", "disks": ["/a.img", {"path": "/a.img", "readonly": true}]}'
seed initrd-alone   '{"name": "i", "initrd": "/boot/initrd.img"}'
seed many-disks     '{"name": "d", "disks": ["/0", "/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8", "/9", "/10", "/11", "/12", "/13", "/14", "/15", "/16"]}'
seed not-object     '[{"name": "vm1"}]'
seed memory-real    '{"name": "r", "memory": 512.0}'
seed memory-huge    '{"name": "h", "memory": "99999999999999999999999G"}'
seed vcpus-big      '{"name": "v", "vcpus": 257}'
seed machine-comma  '{"name": "m", "machine": "pc,accel=xen"}'
seed emulator-rel   '{"name": "e", "emulator": "./qemu"}'
seed none-disks     '{"name": "p", "machine": "none", "disks": ["/a.img"]}'
seed duplicate-key  '{"name": "a", "name": "b"}'
