#!/usr/bin/env bash
# make check-slurm: slurm/train.sbatch under a real one-node Slurm
# (tests/slurm/start-local-slurm.sh). Root only (it runs slurmctld).
#  1. The early signal (--signal=B:USR1, sent at once with scancel
#     --batch): every rank saves, the job requeues itself, the requeued
#     job resumes and finishes with the weights of an uninterrupted run,
#     bit for bit; resubmitted on 1 task, it resumes the 2-task
#     checkpoint and trains on.
#  2. No early signal, a real time limit (1 minute): Slurm's SIGTERM
#     makes every rank save within KillWait; requeued; resumed.
#  3. slurm/search.sbatch signalled during its trials: requeued, finished,
#     every trial in the journal finished exactly once.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${MPITRAIN_BUILDDIR:-$top/build}
[ "$(id -u)" -eq 0 ] || { echo "check-slurm: needs root (slurmctld); skipped"; exit 77; }
eval "$(bash "$top/tests/slurm/start-local-slurm.sh")"
work=$(mktemp -d /tmp/mpitrain-slurm-check.XXXXXX)
# Ranks of a job Slurm cancelled that still run: with proctrack/linuxproc
# a cancelled time-limit job once left its two ranks training for 25
# minutes after the test, taking both cores from what ran next. They are
# ours if they are this build's binary and run in this test's directory.
kill_leftovers() {
    local p bin
    bin=$(readlink -f "$build/.libs/mpitrain" 2>/dev/null || echo none)
    for p in $(ls /proc | grep -E '^[0-9]+$'); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$bin" ] || continue
        case $(readlink "/proc/$p/cwd" 2>/dev/null) in
        "$work" | "$work (deleted)") ;;
        *) continue ;;
        esac
        echo "   killing rank $p, left running by a job Slurm ended"
        kill -9 "$p" 2>/dev/null || true
    done
}
cleanup() {
    scancel --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    kill_leftovers
    [ "${keep:-0}" = 1 ] && cp -r "${MPITRAIN_SLURM_DIR:-/tmp/mpitrain-slurm}/log" "$work/slurm-log"
    bash "$top/tests/slurm/stop-local-slurm.sh"
    [ "${keep:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() {
    echo "FAIL: $*"
    echo "   Slurm now: $(squeue -h -o '%i %T %r' 2>/dev/null | tr '\n' ';') node" \
        "$(sinfo -h -N -o '%T %E' 2>/dev/null | head -1)"
    keep=1; echo "logs kept in $work"; exit 1
}
export MPITRAIN="$build/mpitrain" MPITRAIN_SLURM="$top/slurm"
mpirun=(mpirun --allow-run-as-root --oversubscribe)

"$MPITRAIN" convert fashion-mnist data >/dev/null
# ~10 s on 2 ranks of the 2-core VM; an epoch line every 0.1 s or so.
cat > run.ini <<INI
[run]
dir = run
seed = 3
progress = lines
[data]
train = data/t10k.h5
validation = 0.1
limit = 3000
[train]
epochs = 150
batch = 32
[optimizer]
type = adam
lr = 0.001
[flatten]
[dense]
units = 32
activation = relu
[dense]
units = 10
[softmax]
INI

# Until job $1 has left the queue (at most $2 seconds).
wait_gone() {
    for _ in $(seq 1 $(($2 * 2))); do
        [ -z "$(squeue -h -j "$1" -o %T 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    fail "job $1 still in the queue after $2 s"
}
# Until the node is idle again (a job that just ended may still be
# completing there; a job submitted then once had its step cancelled at
# start), at most 60 s.
wait_idle() {
    for _ in $(seq 1 120); do
        case $(sinfo -h -N -o '%T' 2>/dev/null | head -1) in
        idle*) return 0 ;;
        esac
        sleep 0.5
    done
    fail "the node is not idle after 60 s: $(sinfo -h -N -o '%T')"
}
# What slurmd logged about job $1 (for the flakes retried below; their
# cause is not known yet): its last lines, indented.
slurm_says() {
    grep -E "(JobId|job|StepId=)[ =]?$1[^0-9]" \
        "${MPITRAIN_SLURM_DIR:-/tmp/mpitrain-slurm}/log/slurmd.log" 2>/dev/null |
        tail -n 12 | sed 's/^/     slurmd: /'
}
# One more try of job $job, whose log is $1.log and run dir $1, after a
# Slurm failure (how it ended: $3), said aloud: the first try's log is
# kept as $1-first.log, its run dir removed, and job becomes the new one,
# submitted by function $2 once the node is idle and cleaned up.
once_more() {
    echo "   the job ended $3 (Slurm: $(grep -m1 -o 'CANCELLED AT [^*]*' \
        "$1.log")); once more"
    slurm_says "$job"
    kill_leftovers
    mv "$1.log" "$1-first.log"
    rm -rf "$1"
    wait_idle
    sleep 3 # slurmd's clean-up of the last job
    job=$($2)
}
# Until file $1 has a line matching $2 (at most $3 seconds).
wait_line() {
    for _ in $(seq 1 $(($3 * 2))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.5
    done
    fail "no '$2' in $1 after $3 s; its end: $(tail -c 300 "$1" 2>/dev/null)"
}
# Until file $1 has a line matching $2 (status 0) or job $3 has left the
# queue (status 1), at most $4 seconds.
line_or_gone() {
    for _ in $(seq 1 $(($4 * 2))); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        [ -z "$(squeue -h -j "$3" -o %T 2>/dev/null)" ] && return 1
        sleep 0.5
    done
    fail "no '$2' in $1 after $4 s"
}

echo "== uninterrupted reference (mpirun -np 2)"
"${mpirun[@]}" -np 2 "$MPITRAIN" train run.ini --set run.dir=ref > ref.log 2>&1 ||
    fail "reference run: $(tail -3 ref.log)"

echo "== early signal: save, requeue, resume, finish"
t0=$(date +%s)
wait_idle
job=$(sbatch --parsable --ntasks=2 --output=usr1.log \
    "$top/slurm/train.sbatch" run.ini --set run.dir=usr1)
wait_line usr1.log "^epoch 3/" 60
scancel --batch --signal=USR1 "$job"
wait_gone "$job" 120
grep -q "stopped on request" usr1.log || fail "no checkpoint on the signal"
grep -q "mpitrain exited 75" usr1.log || fail "not exit 75"
grep -q "restart 1," usr1.log || fail "not requeued"
grep -q "resuming from usr1/checkpoints/ckpt-" usr1.log || fail "not resumed"
grep -q "weights written to usr1/weights.h5" usr1.log || fail "did not finish"
h5diff -q ref/weights.h5 usr1/weights.h5 ||
    fail "the requeued run's weights differ from the uninterrupted run's"
echo "   signalled, saved, requeued, resumed, same weights ($(($(date +%s) - t0)) s)"

echo "== the same run resubmitted on another task count: 10 more epochs on 1 task"
wait_idle
job=$(sbatch --parsable --ntasks=1 --output=one.log "$top/slurm/train.sbatch" \
    run.ini --set run.dir=usr1 --set train.epochs=160)
wait_gone "$job" 120
grep -q "resuming from usr1/checkpoints/ckpt-.*(saved by 2 ranks)" one.log ||
    fail "1 task did not resume the 2-task checkpoint: $(grep -i -m1 error one.log)"
grep -q "^epoch 160/160" one.log || fail "did not train on to epoch 160"
grep -q "mpitrain exited 0" one.log || fail "not exit 0"
echo "   a 2-task checkpoint resumed on 1 task and trained on"

echo "== time limit without an early signal (SIGTERM): save, requeue, resume"
t0=$(date +%s)
sed '/#SBATCH --signal/d' "$top/slurm/train.sbatch" > nosignal.sbatch
# submit_term: the job, its time limit one minute (call wait_idle first).
submit_term() {
    sbatch --parsable --ntasks=2 --time=1 --output=term.log nosignal.sbatch \
        run.ini --set run.dir=term --set train.epochs=100000000
}
wait_idle
sleep 3 # slurmd's clean-up of the last job (see the retry below)
job=$(submit_term)
# Twice on 2026-12-02 (of five runs) this job did not reach its requeue
# for Slurm's reasons: once the time limit's SIGTERM never reached the
# tasks (only the batch step's cancel logged; the ranks trained on until
# killed), once the step was cancelled 2 s after it started, right after
# the previous job. Then, and only then, one more try, said aloud; a
# second failure fails. (A job that is requeued stays in the queue.)
for _ in $(seq 1 400); do
    grep -q "restart 1," term.log 2>/dev/null && break
    [ -z "$(squeue -h -j "$job" -o %T 2>/dev/null)" ] && break
    sleep 0.5
done
if ! grep -q "restart 1," term.log && ! grep -q "stopped on request" term.log; then
    once_more term submit_term "without saving"
fi
wait_line term.log "restart 1," 150
wait_line term.log "resuming from term/checkpoints/ckpt-" 60
scancel "$job"
grep -q "DUE TO TIME LIMIT" term.log || fail "no time limit reached"
grep -q "stopped on request" term.log || fail "no checkpoint on SIGTERM"
grep -q "mpitrain exited 75" term.log || fail "not exit 75 at the time limit"
echo "   time limit, saved within KillWait, requeued, resumed ($(($(date +%s) - t0)) s)"
echo "== a search signalled during its trials: requeue, finish, each trial once"
t0=$(date +%s)
{ cat run.ini; printf '%s\n' "[search]" "method = grid" \
    "optimizer.lr = grid(0.001, 0.002, 0.003, 0.004)" \
    "metric = val_accuracy" "ranks_per_trial = 1"; } > search.ini
submit_search() {
    sbatch --parsable --ntasks=2 --output=search.log \
        "$top/slurm/search.sbatch" search.ini --set train.epochs=200 \
        --set data.limit=10000 --set run.dir=search
}
# The signal goes as the second wave starts (trial 0 or 1 has finished,
# 2 or 3 just began): an event, not a time, so that a fast machine does
# not finish the search first (a trial is >= 3 s on the fastest seen,
# 2-core EPYC with AVX-512) and a slow one is not signalled too early.
second_wave='"started","trial":[23],'
wait_idle
sleep 3
job=$(submit_search)
if ! line_or_gone search/journal.jsonl "$second_wave" "$job" 300; then
    # The job ended before its second wave: Slurm's step cancel at start
    # (see above) gets one more try, said aloud; anything else fails.
    grep -q "CANCELLED AT" search.log ||
        fail "the search ended before its second trial wave: $(tail -c 300 search.log)"
    once_more search submit_search early
    wait_line search/journal.jsonl "$second_wave" 300
fi
scancel --batch --signal=USR1 "$job"
wait_gone "$job" 180
grep -q "mpitrain exited 75" search.log || fail "the search did not save and exit 75"
grep -q "restart 1," search.log || fail "the search was not requeued"
"$MPITRAIN" search --status search > status.txt 2>&1 || true
for t in 0 1 2 3; do
    n=$(grep -c "\"finished\",\"trial\":$t," search/journal.jsonl || true)
    [ "$n" -eq 1 ] || fail "trial $t finished $n times in the journal"
done
echo "   signalled, requeued, 4 trials finished once each ($(($(date +%s) - t0)) s)"
echo "check-slurm: all passed"
