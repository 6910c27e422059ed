#!/usr/bin/env bash
# Model-check the mailbox (mailbox.pml) and the domain job protocol
# (jobs.pml) with spin.  See README.md for what each check proves.
#
#   models/run.sh            every check (exit 0: all as expected)
#   models/run.sh disk       only P8 (the definition file agrees with the
#                            registry; it found the bug fixed in 2026-12)
#
# A check passes when spin explores the whole (bounded) state space and
# finds no violation.  Some checks must FAIL: the old undefine design
# (the orphan QEMU), deliberate bugs (the properties have teeth), and
# witnesses (each interesting situation is reachable, so nothing passes
# vacuously).  Everything runs in a temporary directory.
#
# Environment: SPIN, CC, JOBS (parallel checks, default 2), DEPTH (pan -m,
# default 10000), HASH (pan -w, default 25), MEMLIM (MB per pan, 4096).
set -u

here=$(cd "$(dirname "$0")" && pwd)
SPIN=${SPIN:-spin}
CC=${CC:-cc}
JOBS=${JOBS:-2}
DEPTH=${DEPTH:-10000}
HASH=${HASH:-25}
MEMLIM=${MEMLIM:-4096}

if ! command -v "$SPIN" >/dev/null 2>&1; then
	echo "models: spin not found (apt-get install spin): skipped"
	exit 77
fi
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "models: no C compiler ($CC): skipped"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/corral-models.XXXXXX")
# On an interrupt, stop the checks still running (each one's spin, cc or
# pan is a child of its subshell), then clean up.
stop_checks() {
	local pid
	for pid in $(jobs -p); do
		pkill -TERM -P "$pid" 2>/dev/null
		kill -TERM "$pid" 2>/dev/null
	done
}
trap 'rm -rf "$tmp"' EXIT
trap 'stop_checks; exit 130' INT TERM

# Checks, one a line:
#   name | model | expect | spin -D flags | cc flags | pan flags | pattern
# expect: pass, or fail (a violation must be found; its message must match
# pattern, an extended regular expression, when one is given).
# cc flags starting with "quick" build with -O0 (short runs), else -O1.
all_checks() {
	local SAFE="-DSAFETY -DNOCLAIM -DCOLLAPSE"
	local LTL="-DCOLLAPSE"
	cat <<EOF
mailbox safety (3 senders, 2 workers, batch 2, ioloop)|mailbox.pml|pass||$SAFE|
mailbox ltl no_lost_wakeup (a)|mailbox.pml|pass||$LTL|-a -N no_lost_wakeup
mailbox ltl one_worker (b)|mailbox.pml|pass||$LTL|-a -N one_worker
mailbox ltl sched_once (d)|mailbox.pml|pass||$LTL|-a -N sched_once
mailbox safety (2 senders x 2 messages)|mailbox.pml|pass|-DNSEND=2 -DMPS=2|$SAFE|
mailbox bug: count before append|mailbox.pml|fail|-DBUG_COUNT_FIRST|quick $SAFE||assertion violated
mailbox bug: schedule on queue-was-empty|mailbox.pml|fail|-DBUG_EMPTY_FLAG|quick $SAFE||assertion violated
mailbox bug: no re-queue (lost wake-up)|mailbox.pml|fail|-DBUG_NO_REQUEUE|quick $LTL|-a -A -N no_lost_wakeup|acceptance cycle
mailbox bug: release before the last message|mailbox.pml|fail|-DBUG_EARLY_RELEASE|quick $SAFE||assertion violated
mailbox witness 1: sent after close, dropped in a turn|mailbox.pml|fail|-DREACH=1|quick $SAFE||1!=1
mailbox witness 2: sent after close, dropped at reclaim|mailbox.pml|fail|-DREACH=2|quick $SAFE||2!=2
mailbox witness 3: send refused (closed)|mailbox.pml|fail|-DREACH=3|quick $SAFE||3!=3
mailbox witness 4: turn re-queues the actor|mailbox.pml|fail|-DREACH=4|quick $SAFE||4!=4
mailbox witness 5: worker waits for a link|mailbox.pml|fail|-DREACH=5|quick $SAFE||linked
mailbox witness 6: ioloop runs the turn itself|mailbox.pml|fail|-DREACH=6|quick $SAFE||violated 0
mailbox witness 7: batch limit cuts a turn|mailbox.pml|fail|-DREACH=7|quick $SAFE||7!=7
jobs safety (start, undefine, start/shutdown/destroy)|jobs.pml|pass||$SAFE|
jobs ltl no_orphan (P7)|jobs.pml|pass||$LTL|-a -N no_orphan
jobs ltl all_answered (P6)|jobs.pml|pass||$LTL|-a -N all_answered
jobs P8: definition file agrees with the registry|jobs.pml|pass|-DCHECK_DISK|$SAFE|
jobs safety + daemon shutdown|jobs.pml|pass|-DSHUTDOWN=1 -DSUBMIT_MAX=0|$SAFE|
jobs safety, 4 clients|jobs.pml|pass|-DNCLIENT=4 -DSUBMIT_MAX=0 -DCRASH=0 -DIOFAIL=0|$SAFE|
jobs safety, at most 1 waiting (waiting_jobs_max)|jobs.pml|pass|-DWMAX=1|$SAFE|
jobs ltl all_answered, at most 1 waiting|jobs.pml|pass|-DWMAX=1|$LTL|-a -N all_answered
jobs OLD_UNDEFINE: orphan QEMU|jobs.pml|fail|-DOLD_UNDEFINE|quick -DSAFETY -DNOCLAIM -DBFS||undefined.*proc
jobs bug: step to whoever holds|jobs.pml|fail|-DBUG_STEP_NO_ID|quick $SAFE||b==gen
jobs bug: stale timer ends jobs|jobs.pml|fail|-DBUG_STALE_TIMER|quick $SAFE||now>=deadline
jobs witness 1: undefine succeeds|jobs.pml|fail|-DREACH=1|quick $SAFE||1!=1
jobs witness 2: job queued behind undefine ends gone|jobs.pml|fail|-DREACH=2|quick $SAFE||2!=2
jobs witness 3: start succeeds|jobs.pml|fail|-DREACH=3|quick $SAFE||3!=3
jobs witness 4: destroy preempts a start|jobs.pml|fail|-DREACH=4|quick $SAFE||4!=4
jobs witness 5: stale step discarded|jobs.pml|fail|-DREACH=5|quick $SAFE||5!=5
jobs witness 6: stale timer finds nothing|jobs.pml|fail|-DREACH=6|quick $SAFE||6!=6
jobs witness 7: waiting job gives up (busy)|jobs.pml|fail|-DREACH=7|quick $SAFE||7!=7
jobs witness 8: holder times out|jobs.pml|fail|-DREACH=8|quick $SAFE||8!=8
jobs witness 9: a removal completes after its undefine ended|jobs.pml|fail|-DREACH=9|quick $SAFE||9!=9
jobs witness 10: destroy preempts an undefine|jobs.pml|fail|-DREACH=10|quick $SAFE||10!=10
jobs witness 11: job sent behind the close ends gone|jobs.pml|fail|-DREACH=11|quick $SAFE||11!=11
jobs witness 12: SHUTDOWN event ends a shutdown|jobs.pml|fail|-DREACH=12|quick $SAFE||12!=12
jobs witness 13: a full waiting queue refuses at once|jobs.pml|fail|-DREACH=13 -DWMAX=1|quick $SAFE||13!=13
EOF
}

disk_checks() {
	cat <<EOF
jobs P8: definition file agrees with the registry|jobs.pml|pass|-DCHECK_DISK|-DSAFETY -DNOCLAIM -DCOLLAPSE|
EOF
}

# run_check INDEX LINE: writes $tmp/INDEX/result (one line) and keeps the
# outputs there.
run_check() {
	local idx=$1 line=$2 name model expect sdefs cdefs pargs pat
	local d="$tmp/$idx" opt=-O1 t0 t1 errors states depth secs result note
	IFS='|' read -r name model expect sdefs cdefs pargs pat <<<"$line"
	mkdir -p "$d"
	cp "$here/$model" "$d/"
	case $cdefs in
	quick*) opt=-O0; cdefs=${cdefs#quick} ;;
	esac
	t0=$(date +%s.%N)
	if ! (cd "$d" && $SPIN -a $sdefs "$model" >spin.out 2>&1); then
		echo "FAIL|$name|spin -a failed: $(tail -n 3 "$d/spin.out" | tr '\n' ' ')" >"$d/result"
		return
	fi
	if ! (cd "$d" && $CC $opt -w -DMEMLIM=$MEMLIM $cdefs -o pan pan.c >cc.out 2>&1); then
		echo "FAIL|$name|cc failed: $(tail -n 3 "$d/cc.out" | tr '\n' ' ')" >"$d/result"
		return
	fi
	(cd "$d" && ./pan -m$DEPTH -w$HASH $pargs >pan.out 2>&1)
	t1=$(date +%s.%N)
	errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$d/pan.out" | head -n 1)
	states=$(awk '/states, stored/ { print $1; exit }' "$d/pan.out")
	depth=$(sed -n 's/.*depth reached \([0-9][0-9]*\).*/\1/p' "$d/pan.out" | head -n 1)
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	note="states=${states:-?} depth=${depth:-?} time=${secs}s"
	if [ -z "$errors" ]; then
		result="FAIL|$name|pan did not finish: $(tail -n 3 "$d/pan.out" | tr '\n' ' ')"
	elif [ "$expect" = pass ]; then
		if [ "$errors" != 0 ]; then
			result="FAIL|$name|$(grep -m1 -E 'violated|cycle|invalid end' "$d/pan.out") $note"
		elif grep -qE 'max search depth too small|out of memory|reached -DMEMLIM' "$d/pan.out"; then
			result="FAIL|$name|search incomplete (raise DEPTH/MEMLIM) $note"
		else
			result="PASS|$name|$note"
		fi
	else
		if [ "$errors" = 0 ]; then
			result="FAIL|$name|no violation found, one was expected $note"
		elif [ -n "$pat" ] && ! grep -E 'violated|cycle' "$d/pan.out" | grep -qE "$pat"; then
			result="FAIL|$name|unexpected violation: $(grep -m1 -E 'violated|cycle' "$d/pan.out") $note"
		else
			result="FAILS AS EXPECTED|$name|$note"
		fi
	fi
	echo "$result" >"$d/result"
	echo "$sdefs" >"$d/sdefs"
}

run_all() {
	local idx=0 line running=0
	while IFS= read -r line; do
		[ -n "$line" ] || continue
		idx=$((idx + 1))
		echo "$line" >"$tmp/line.$idx"
		run_check "$idx" "$line" &
		running=$((running + 1))
		if [ "$running" -ge "$JOBS" ]; then
			wait -n
			running=$((running - 1))
		fi
	done
	wait
	echo "$idx" >"$tmp/count"
}

# The counterexample of a failing check, as the model's own trail text.
show_trail() {
	local d=$1 model=$2 sdefs
	sdefs=$(cat "$d/sdefs")
	(cd "$d" && $SPIN -T -t $sdefs "$model" 2>/dev/null) | grep '^  ' | sed \
		-e 's/kind 1/start/; s/kind 2/shutdown/; s/kind 3/destroy/; s/kind 4/undefine/' \
		-e 's/code 1$/ok/; s/code 2$/wrong state/; s/code 3$/busy/; s/code 4$/timed out/' \
		-e 's/code 5$/failed/; s/code 6$/cancelled by destroy/; s/code 7$/gone/' \
		-e 's/code 8$/no such domain/' \
		-e 's/QEMU process state=1/QEMU process running/' \
		-e 's/QEMU process state=2/QEMU process killed, not exited/' \
		-e 's/QEMU process state=3/QEMU process exited, not reaped/'
}

start=$(date +%s)
case ${1:-all} in
disk) run_all < <(disk_checks) ;;
all) run_all < <(all_checks) ;;
*) echo "usage: $0 [all|disk]" >&2; exit 2 ;;
esac

status=0
n=$(cat "$tmp/count")
printf '%-18s %-55s %s\n' RESULT CHECK "STATES / DEPTH / TIME"
for i in $(seq 1 "$n"); do
	IFS='|' read -r res name note <"$tmp/$i/result"
	printf '%-18s %-55s %s\n' "$res" "$name" "$note"
	case $res in
	FAIL) status=1 ;;
	esac
done

for i in $(seq 1 "$n"); do
	IFS='|' read -r res name note <"$tmp/$i/result"
	case $name in
	*OLD_UNDEFINE*|*P8*)
		if [ -f "$tmp/$i/jobs.pml.trail" ]; then
			echo
			echo "Counterexample, $name:"
			show_trail "$tmp/$i" jobs.pml
		fi
		;;
	esac
done

echo
echo "models: $n checks in $(($(date +%s) - start)) s: $([ $status = 0 ] && echo 'all as expected' || echo 'FAILED')"
exit $status
