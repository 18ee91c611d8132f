#!/bin/sh
# Run GenMC on tests/modelcheck/epoch_mc.c and inplace_mc.c in every
# configuration below
# (`make modelcheck`).  "pass" configurations must verify; "fail" ones are
# reverted fixes or deliberate refutations that GenMC must report an error
# for (the run fails if it does not).  Logs and a summary go to $OUT
# (build/mc).  Usage: run.sh [NAME-PATTERN] (a grep -E pattern on names).
set -u
here=$(cd "$(dirname "$0")/../.." && pwd)
cd "$here" || exit 1
GENMC=${GENMC:-genmc}
OUT=${OUT:-build/mc}
pat=${1:-.}
mkdir -p "$OUT"

# name  expect  flags   (RWC: writer + 1 reader + advancer; st-*: an idle
# owner's record stolen by another thread's cmap_collect; ip-*: the
# in-place value protocol, tests/modelcheck/inplace_mc.c)
configs='
mb-1r           pass -DMC_WCOLLECTS=3
mb-1r-vacuity   fail -DMC_WCOLLECTS=3 -DMC_VACUITY
mb-rwc          pass -DMC_ADVANCER -DMC_WCOLLECTS=1 -DMC_CHECK_TAG
mb-rwc-tag      fail -DMC_ADVANCER -DMC_WCOLLECTS=0 -DMC_CHECK_TAG -DMC_TAG_GE_R
mb-rwc-grace2   fail -DMC_ADVANCER -DMC_WCOLLECTS=1 -DMC_GRACE2
fe-1r           pass -DMC_NO_MEMBARRIER -DMC_WCOLLECTS=3
fe-1r-nofence   fail -DMC_NO_MEMBARRIER -DMC_WCOLLECTS=3 -DMC_REVERT_FENCE
fe-rwc-grace2   pass -DMC_NO_MEMBARRIER -DMC_ADVANCER -DMC_WCOLLECTS=1 -DMC_GRACE2 -DMC_CHECK_TAG -DMC_TAG_GE_R
fail-2op         pass -DMC_FAIL_AT=1 -DMC_FAIL_THREAD=1 -DMC_ROPS=2 -DMC_WCOLLECTS=4
fail-2op-vacuity fail -DMC_FAIL_AT=1 -DMC_FAIL_THREAD=1 -DMC_ROPS=2 -DMC_WCOLLECTS=4 -DMC_VACUITY
fail-2op-nowait  fail -DMC_FAIL_AT=1 -DMC_FAIL_THREAD=1 -DMC_ROPS=2 -DMC_WCOLLECTS=4 -DMC_REVERT_ALLFENCED
fail-2op-nofence fail -DMC_FAIL_AT=1 -DMC_FAIL_THREAD=1 -DMC_ROPS=2 -DMC_WCOLLECTS=4 -DMC_REVERT_FENCE
st              pass -DMC_STEAL -DIDLE_EPOCHS=0
st-vacuity      fail -DMC_STEAL -DIDLE_EPOCHS=0 -DMC_VACUITY
st-norevoke     fail -DMC_STEAL -DIDLE_EPOCHS=0 -DMC_REVERT_REVOKED
st-fe           pass -DMC_STEAL -DIDLE_EPOCHS=0 -DMC_NO_MEMBARRIER
st-fe-norevoke  fail -DMC_STEAL -DIDLE_EPOCHS=0 -DMC_NO_MEMBARRIER -DMC_REVERT_REVOKED
ip-1w           pass -DMC_WRITERS=1
ip-2w           pass -DMC_WRITERS=2
ip-2w-cond      pass -DMC_WRITERS=2 -DMC_COND
ip-1w-nocarry   fail -DMC_WRITERS=1 -DMC_NO_CARRY
ip-2w-nocarry   fail -DMC_WRITERS=2 -DMC_NO_CARRY
ip-1w-copyfirst fail -DMC_WRITERS=1 -DMC_COPY_FIRST
ip-1w-plain     fail -DMC_WRITERS=1 -DMC_PLAIN_PENDING
ip-1a           pass -DMC_APPENDERS=1
ip-2a           pass -DMC_APPENDERS=2 -DMC_READS=1
ip-1a-nocarry   fail -DMC_APPENDERS=1 -DMC_NO_CARRY
ip-2a-nocarry   fail -DMC_APPENDERS=2 -DMC_NO_CARRY
ip-1a-countfirst fail -DMC_APPENDERS=1 -DMC_COUNT_FIRST
ip-1a-plain     fail -DMC_APPENDERS=1 -DMC_PLAIN_PENDING
ip-1a-answer    pass -DMC_APPENDERS=1 -DMC_ANSWER
ip-1a-noshow    fail -DMC_APPENDERS=1 -DMC_ANSWER -DMC_NO_SHOW
ip-1w-answer    pass -DMC_WRITERS=1 -DMC_ANSWER
ip-1w-noshow    fail -DMC_WRITERS=1 -DMC_ANSWER -DMC_NO_SHOW
'

summary=$OUT/summary.txt
: >"$summary"
echo "$configs" | while read -r name expect flags; do
	[ -n "$name" ] || continue
	echo "$name" | grep -Eq -- "$pat" || continue
	log=$OUT/$name.log
	client=tests/modelcheck/epoch_mc.c
	case $name in ip-*) client=tests/modelcheck/inplace_mc.c ;; esac
	start=$(date +%s)
	# shellcheck disable=SC2086
	nice -n 10 "$GENMC" -disable-estimation -disable-mm-detector \
		-disable-warn-on-unfreed-memory -- -I include -DCMAP_MODELCHECK \
		$flags "$client" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	execs=$(sed -n 's/^Number of complete executions explored: //p' "$log")
	blocked=$(sed -n 's/^Number of blocked executions seen: //p' "$log")
	if grep -q '^No errors were detected' "$log"; then
		got=pass
	elif grep -q 'Verification unsuccessful' "$log"; then
		got=fail
	else
		got="error(rc=$rc)"
	fi
	line=$(printf '%-16s expect %-4s got %-4s  %6s executions %5s blocked %5ss  %s' \
		"$name" "$expect" "$got" "${execs:-?}" "${blocked:-0}" "$secs" \
		"$(grep -m1 -E 'Assertion violation|Error detected|freed memory|race' "$log")")
	echo "$line" | tee -a "$summary"
	[ "$got" = "$expect" ] || echo "MISMATCH $name" >>"$summary"
done
if grep -q MISMATCH "$summary"; then
	echo "modelcheck: results differ from expectations (logs in $OUT)" >&2
	exit 1
fi
echo "modelcheck: all configurations as expected (logs in $OUT)"
