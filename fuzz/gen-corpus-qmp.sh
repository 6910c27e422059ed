#!/bin/sh
# Writes the seed corpus for fuzz-qmp: what a QEMU sends (greetings, replies,
# events, the odd shapes the parser must refuse), and commands as a user
# types them (fuzz-qmp also reads each input as a command).  A few hundred
# bytes each.  Run from anywhere; rewrites fuzz/corpus-qmp/ next to this
# script.  printf reads the text as a format: write \\u for a JSON \u.
set -eu
dir="$(dirname "$0")/corpus-qmp"
mkdir -p "$dir"
seed() { printf "$2" > "$dir/$1"; }

G='{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u6"}, "capabilities": ["oob"]}}\r\n'

# ---- a server's stream
seed greeting           "$G"
seed greeting-minimal   '{"QMP": {}}\r\n'
seed session            "$G"'{"return": {}, "id": 1}\r\n{"timestamp": {"seconds": 1700000000, "microseconds": 250000}, "event": "RESUME"}\r\n{"return": {"status": "running", "singlestep": false, "running": true}, "id": 2}\r\n'
seed error-id           '{"id": 7, "error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}}\r\n'
seed error-no-id        '{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}\r\n'
seed event-data         '{"timestamp": {"seconds": 1700000001, "microseconds": 5}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}\r\n'
seed event-no-clock     '{"timestamp": {"seconds": -1, "microseconds": -1}, "event": "STOP", "data": null}\n{"event": "POWERDOWN"}\n'
seed return-uint64      '{"return": {"actual": 18446744073709551615, "free": 1.5e3}, "id": 3}\n'
seed ids-odd            '{"return": {}, "id": "abc"}\n{"return": 5, "id": -1}\n{"return": [], "id": 4.0}\n{"return": null}\n'
seed blank-lines        '\r\n  \t\r\n\n{"return": {}, "id": 2}\n'
seed partial            '{"return": {}, "id": 9}\n{"return": {"status": "runn'
seed nul-in-string      '{"return": "a\\u0000b", "id": 1}\n'
seed unicode            '{"error": {"class": "GenericError", "desc": "caf\\u00e9 \\ud83d\\ude00 \303\251"}, "id": 5}\n'
# ---- broken streams: -EBADMSG, then -EPROTO of every kind
seed bad-json           '{"return": {}, "id": 1}\n{"return": }\n{"return": {}, "id": 2}\n'
seed not-object         '{"return": {}, "id": 1}\r\n[{"return": {}}]\n'
seed two-kinds          '{"return": {}, "event": "STOP"}\n'
seed no-kind            '{"id": 1}\n'
seed greeting-bad-caps  '{"QMP": {"version": {}, "capabilities": "oob"}}\n'
seed event-bad-name     '{"event": 42}\n'
seed event-bad-data     '{"event": "X", "data": [1]}\n'
seed error-bad-shape    '{"error": {"class": "GenericError"}, "id": 3}\n'
# ---- a user's command (qmp_conn_encode_raw)
seed cmd-query          '{"execute": "query-status", "arguments": {}, "id": "user-1"}'
seed cmd-hmp            '{"execute":"human-monitor-command","arguments":{"command-line":"info registers"}}'
seed cmd-bare           '{"execute":"system_reset"}'
seed cmd-args-nested    '{"execute": "set_link", "arguments": {"name": "n0", "up": false, "x": [1, 2.5, null, {"y": "\\u00e9"}]}}'
seed cmd-empty          '{"execute": "", "foo": 1}'
seed cmd-dup            '{"execute": "stop", "execute": "cont"}'
seed cmd-args-null      '{"execute": "cont", "arguments": null}'
