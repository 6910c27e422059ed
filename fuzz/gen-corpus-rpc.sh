#!/bin/sh
# Writes the seed corpus for fuzz-rpc: a few valid messages, a few bytes each.
# Run from anywhere; rewrites fuzz/corpus-rpc/ next to this script.
set -eu
dir="$(dirname "$0")/corpus-rpc"
mkdir -p "$dir"
seed() { printf "$2" > "$dir/$1"; }

# [0, 1, "ping", []]
seed request         '\224\000\001\244ping\220'
# [0, 256, "domain.start", [{"name": "vm1"}]]
seed request-map     '\224\000\315\001\000\254domain.start\221\201\244name\243vm1'
# [1, 65536, nil, {"ok": true, "mem": 1 << 36}]
seed response        '\224\001\316\000\001\000\000\300\202\242ok\303\243mem\317\000\000\000\020\000\000\000\000'
# [1, 5, [4, "no-such-domain"], nil]
seed error           '\224\001\005\222\004\256no-such-domain\300'
# [2, "event", [{}]]
seed notification    '\223\002\245event\221\200'
# [0, 7, "m", [1.5, -1, "hi", bin "\000", timestamp32, {"k": [nil]}]] in wide encodings
seed wide            '\335\000\000\000\004\000\320\007\333\000\000\000\001m\334\000\006\313\077\370\000\000\000\000\000\000\377\331\002hi\304\001\000\326\377\000\000\000\001\336\000\001\241k\221\300'
# [1, 9, nil, {"vms": [{"name": "vm1", "mem": 256, "t": -1.5, "ok": true, "x": nil}]}]
seed result-json     '\224\001\011\300\201\243vms\221\205\244name\243vm1\243mem\315\001\000\241t\313\277\370\000\000\000\000\000\000\242ok\303\241x\300'
# [0, 3, "domain.define", [{"config": {"name": "vm1", "memory": "512M", "disks": ["/a.img,ro"]}}]]
seed define          '\224\000\003\255domain.define\221\201\246config\203\244name\243vm1\246memory\244512M\245disks\221\251/a.img,ro'
# [1, 5, nil, ""]: an empty str, which msgpack-c may hand over as a NULL pointer
seed empty-str       '\224\001\005\300\240'
# [1, 5, nil, {"": 1}]: an empty map key, the same way
seed empty-key       '\224\001\005\300\201\240\001'
# two requests back to back
seed two-requests    '\224\000\001\244ping\220\224\000\002\244ping\220'
