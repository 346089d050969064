#!/bin/sh
# Log compiler for .mpi tests: runs the test program under mpirun at each
# rank count in MPITRAIN_TEST_NP (default "1 2 3 4"), each under timeout so
# that a hang fails the test instead of stalling the suite.
# Usage (by automake): mpirun.sh PROGRAM [ARGS...]
set -u
prog=$1
shift
nps=${MPITRAIN_TEST_NP:-1 2 3 4}
limit=${MPITRAIN_TEST_TIMEOUT:-120}
# A libtool wrapper script cannot be started by mpirun's launcher directly
# on every system; run the real binary with the wrapper's environment.
run="$prog"
if [ -f "$(dirname "$prog")/.libs/$(basename "$prog")" ]; then
    run="$(dirname "$prog")/.libs/$(basename "$prog")"
    LD_LIBRARY_PATH="${MPITRAIN_BUILDDIR:-.}/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi
status=0
for np in $nps; do
    echo "== $prog at $np rank(s)"
    timeout -k 10 "$limit" "${MPIRUN:-mpirun}" --allow-run-as-root \
        --oversubscribe -x LD_LIBRARY_PATH -np "$np" "$run" "$@"
    rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "FAIL: $prog at $np rank(s) timed out after ${limit}s"
    fi
    if [ $rc -ne 0 ]; then
        echo "FAIL: $prog at $np rank(s) exited $rc"
        status=1
    fi
done
exit $status
