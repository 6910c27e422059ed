#!/bin/sh
# Writes the seed corpus for fuzz-def: definition files as corrald writes
# them in STATE_DIR/domains/ (the target loads each as "fuzz.json"), the
# older forms it still reads, and one of each kind of refusal.  Run from
# anywhere; rewrites fuzz/corpus-def/ next to this script.  printf reads the
# text as a format: write \\u for a JSON \u.
set -eu
dir="$(dirname "$0")/corpus-def"
mkdir -p "$dir"
seed() { printf "$2" > "$dir/$1"; }

owner='"owner": {"gid": 0, "groups": [0, 27, 100], "uid": 0}'
# ---- accepted
seed v2-written     '{\n  "autostart": false,\n  "config": {\n    "accel": "tcg",\n    "machine": "none",\n    "memory": 64,\n    "name": "fuzz",\n    "reboot": "reset",\n    "uuid": "6f9619ff-8b86-d011-b42d-00c04fc964ff",\n    "vcpus": 1\n  },\n  '"$owner"',\n  "version": 2\n}\n'
seed v2-autostart   '{"version": 2, "config": {"name": "fuzz", "memory": "128M"}, '"$owner"', "autostart": true}'
seed v2-no-autostart '{"version": 2, "config": {"name": "fuzz"}, "owner": {"uid": 1000, "gid": 1000}}'
seed v2-full        '{"version": 2, "autostart": true, "owner": {"uid": 1000, "gid": 1000, "groups": []}, "config": {"name": "fuzz", "uuid": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "memory": "2G", "vcpus": 4, "machine": "q35", "accel": "kvm", "emulator": "/usr/bin/qemu-system-x86_64", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0", "disks": [{"path": "/var/lib/corral/a.qcow2", "format": "qcow2"}, {"path": "/srv/b,c.img", "readonly": true, "format": "raw"}], "reboot": "acpi"}}'
seed v2-unknown     '{"version": 2, "autostart": false, "config": {"name": "fuzz", "machine": "none"}, '"$owner"', "unknown": ["memory", "vcpus", "disks"]}'
seed v2-unknown-empty '{"version": 2, "config": {"name": "fuzz"}, '"$owner"', "unknown": []}'
seed v1-config-only '{"name": "fuzz", "memory": 256, "vcpus": 2}'
seed other-name     '{"version": 2, "config": {"name": "web-01"}, '"$owner"', "autostart": false}'
seed v1-other-name  '{"name": "db"}'
# ---- refused
seed empty          ''
seed not-json       '{"version": 2, "config": '
seed not-object     '["fuzz"]'
seed scalar         '42'
seed duplicate-key  '{"version": 2, "config": {"name": "fuzz"}, "config": {"name": "b"}, '"$owner"'}'
seed owner-missing  '{"version": 2, "config": {"name": "fuzz"}}'
seed owner-negative '{"version": 2, "config": {"name": "fuzz"}, "owner": {"uid": -1, "gid": 0}}'
seed owner-huge     '{"version": 2, "config": {"name": "fuzz"}, "owner": {"uid": 4294967295, "gid": 0}}'
seed owner-groups   '{"version": 2, "config": {"name": "fuzz"}, "owner": {"uid": 0, "gid": 0, "groups": [0, "wheel"]}}'
seed owner-string   '{"version": 2, "config": {"name": "fuzz"}, "owner": "root"}'
seed autostart-str  '{"version": 2, "config": {"name": "fuzz"}, '"$owner"', "autostart": "yes"}'
seed autostart-null '{"version": 2, "config": {"name": "fuzz"}, '"$owner"', "autostart": null}'
seed unknown-ints   '{"version": 2, "config": {"name": "fuzz"}, '"$owner"', "unknown": ["memory", 7]}'
seed unknown-string '{"version": 2, "config": {"name": "fuzz"}, '"$owner"', "unknown": "memory"}'
seed unknown-null   '{"version": 2, "config": {"name": "fuzz"}, '"$owner"', "unknown": null}'
seed config-null    '{"version": 2, "config": null, '"$owner"'}'
seed config-bad     '{"version": 2, "config": {"name": "fuzz", "memory": "lots"}, '"$owner"'}'
seed config-unknown '{"version": 2, "config": {"name": "fuzz", "memroy": 512}, '"$owner"'}'
seed nul-in-name    '{"version": 2, "config": {"name": "fuzz\\u0000.json"}, '"$owner"'}'
seed name-path      '{"name": "../fuzz"}'
