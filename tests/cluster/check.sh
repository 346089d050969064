#!/usr/bin/env bash
# make check-cluster: the MPI tests across emulated hosts (network
# namespaces joined by a bridge, links shaped to 1 Gbit/s, TCP only; see
# up.sh), as on a real cluster. Root only (network namespaces).
#  1. 2 hosts, 2-4 ranks (ranks 0..k-1 on the first host): data parallel
#     in every sync mode and bf16, checkpoints resumed on other counts,
#     the parameter server, the pipeline, the search, the watchdog.
#  2. 4 hosts, 3 and 4 ranks (one a host): the same programs.
#  3. A host's link cut mid-step (ip link set eth0 down), 4 ranks on 2
#     hosts: every rank on both sides exits 4 within the deadline, naming
#     the ranks it can no longer reach.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${MPITRAIN_BUILDDIR:-$top/build}
# Where hosts cannot be emulated this says so and succeeds: make has no
# "skipped" (automake's 77 is for TESTS).
skip() { echo "SKIP: check-cluster: $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
command -v ip >/dev/null && command -v tc >/dev/null || skip "needs ip and tc (iproute2)"
ip netns add mt-probe 2>/dev/null || skip "this machine refuses network namespaces"
ip netns del mt-probe
work=$(mktemp -d /tmp/mpitrain-cluster-check.XXXXXX)
cleanup() {
    bash "$here/down.sh"
    [ "${keep:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; keep=1; echo "logs kept in $work"; exit 1; }

# MPITRAIN_CLUSTER_PROGRAMS: another list (the link cut runs always).
programs=${MPITRAIN_CLUSTER_PROGRAMS-train checkpoint ps ring shm pipeline_train search}
# Each program at each rank count in turn, its log kept on failure.
run_programs() { # HOSTS NPS PROGRAMS...
    local hosts=$1 nps=$2
    shift 2
    for p in "$@"; do
        local log="$work/$p.$hosts-hosts.log" t0=$SECONDS
        (cd "$build" && MPIRUN="$here/mpirun.sh" MPITRAIN_CLUSTER_HOSTS=$hosts \
            MPITRAIN_TEST_NP="$nps" sh "$top/tests/mpirun.sh" "tests/$p.mpi" \
            > "$log" 2>&1) || { grep FAIL "$log" | head -5; fail "$p.mpi on $hosts hosts"; }
        echo "PASS: $p.mpi on $hosts hosts at $nps ranks ($((SECONDS - t0)) s)"
    done
}

if [ -n "$programs" ]; then
    bash "$here/up.sh" 2
    run_programs 2 "2 3 4" $programs
    run_programs 2 "2 4" watchdog
    bash "$here/up.sh" 4
    run_programs 4 "3 4" $programs
fi

# 3. The link cut. Each rank runs under a wrapper that keeps its exit
# status and its messages: once the link is down, mpirun on the switch no
# longer hears from the far host's ranks.
bash "$here/up.sh" 2
cd "$work"
"$build/mpitrain" convert fashion-mnist data >/dev/null
cat > cut.ini <<INI
[run]
dir = cut
progress = lines
deadline_s = 10
[data]
train = data/t10k.h5
validation = 0
limit = 2000
[train]
epochs = 1000000
batch = 32
[flatten]
[dense]
units = 32
activation = relu
[dense]
units = 10
[softmax]
INI
cat > rank.sh <<SH
#!/bin/sh
r=\$OMPI_COMM_WORLD_RANK
"$build/mpitrain" "\$@" 2> "$work/err.\$r"
echo \$? > "$work/rc.\$r"
SH
chmod +x rank.sh
"$here/mpirun.sh" --allow-run-as-root -np 4 "$work/rank.sh" train cut.ini \
    > cut.log 2>&1 &
launcher=$!
for _ in $(seq 600); do grep -q "train loss" cut.log && break; sleep 0.1; done
grep -q "train loss" cut.log || fail "the link-cut run did not start: $(tail -3 cut.log)"
ip -n mt-h2 link set eth0 down
t0=$SECONDS
for _ in $(seq 400); do
    [ "$(ls rc.* 2>/dev/null | wc -l)" -eq 4 ] && break
    sleep 0.1
done
took=$((SECONDS - t0))
[ "$(ls rc.* 2>/dev/null | wc -l)" -eq 4 ] ||
    fail "link cut: after ${took} s only $(ls rc.* 2>/dev/null | tr '\n' ' ') exited"
for r in 0 1 2 3; do
    case $r in 0 | 1) far="2, 3" ;; *) far="0, 1" ;; esac
    [ "$(cat "rc.$r")" = 4 ] || fail "link cut: rank $r exited $(cat "rc.$r"): $(cat "err.$r")"
    grep -q "no answer from ranks $far (stopped, hung or its node is gone)" "err.$r" ||
        fail "link cut: rank $r does not name ranks $far: $(cat "err.$r")"
done
echo "PASS: link cut: every rank exited 4 within ${took} s (deadline 10 s)," \
    "each naming the far host's ranks"
echo "   $(grep -o 'rank 0: no progress.*' err.0)"
echo "   $(grep -o 'rank 3: no progress.*' err.3)"
# mpirun cannot reach the far host's daemon: it is ended here (teardown
# would end it anyway), after the link is back, as an operator would.
ip -n mt-h2 link set eth0 up
for _ in $(seq 100); do kill -0 "$launcher" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$launcher" 2>/dev/null; then
    echo "   (mpirun was still waiting for the far host 10 s after the link came back; ended)"
    kill -9 "$launcher" 2>/dev/null || true
fi
wait "$launcher" 2>/dev/null || true
