#!/bin/bash
# The body of slurm/train.sbatch and slurm/search.sbatch, which exec it
# (so that it stays the batch shell Slurm signals):
#   requeue.sh train|search CONFIG [mpitrain options]
# Runs mpitrain under srun (or mpirun), passes the early SIGUSR1 on,
# ignores the time limit's SIGTERM (the ranks get it themselves), and on
# exit 75 (checkpointed) requeues the job; slurm/README.md has the why.
set -u
if [ $# -lt 2 ] || { [ "$1" != train ] && [ "$1" != search ]; }; then
    echo "usage: sbatch slurm/${1:-train}.sbatch CONFIG [mpitrain options]" >&2
    exit 2
fi
command=$1
config=$2
shift 2
# A training run picks up its newest checkpoint; a search its journal.
resume=()
[ "$command" = search ] || resume=(--resume auto)
mpitrain=${MPITRAIN:-mpitrain}
# oneDNN's OpenMP threads sleep when idle, so that [run] threads > 1 gives
# them the cores too (spinning, they starved OpenBLAS's threads; README,
# Threads). The job's own setting wins.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
case ${MPITRAIN_LAUNCH:-srun} in
# (no --kill-on-bad-exit: every rank exits 75 after a save, and the
# first to go must not kill the others while they finish.)
srun) launch=(srun --mpi="${MPITRAIN_SRUN_MPI:-pmix}") ;;
mpirun)
    launch=(mpirun -np "${SLURM_NTASKS:-1}" -x OMP_WAIT_POLICY)
    [ "$(id -u)" -ne 0 ] || launch+=(--allow-run-as-root)
    ;;
*)
    echo "slurm/$command.sbatch: MPITRAIN_LAUNCH must be srun or mpirun" >&2
    exit 2
    ;;
esac
echo "slurm/$command.sbatch: job ${SLURM_JOB_ID:-?}, restart" \
    "${SLURM_RESTART_COUNT:-0}, ${SLURM_NTASKS:-1} tasks, $(date -u +%FT%TZ)"

"${launch[@]}" "$mpitrain" "$command" "$config" "${resume[@]}" "$@" &
pid=$!
# --signal=B:USR1 reaches this shell alone: pass it on (srun and mpirun
# relay SIGUSR1 to every rank), and every rank saves and exits 75. At the
# time limit, or where no early signal comes, Slurm sends SIGTERM to
# every process of the job, the ranks included: they save on it, and
# this shell must not send a second signal (a second one exits at once).
trap 'kill -USR1 "$pid" 2>/dev/null' USR1
trap '' TERM
wait "$pid"
status=$?
while kill -0 "$pid" 2>/dev/null; do # wait returned for the trap
    wait "$pid"
    status=$?
done
echo "slurm/$command.sbatch: mpitrain exited $status ($(date -u +%FT%TZ))"
if [ "$status" -eq 75 ]; then
    # Checkpointed, please requeue. scontrol requeue ends this job at once
    # and queues it again; without scontrol (some containers), exit 75,
    # which Slurm requeues where the site sets RequeueExit=75.
    if command -v scontrol >/dev/null && scontrol requeue "${SLURM_JOB_ID:-}"; then
        sleep 60 # the requeue kills this shell
    fi
    echo "slurm/$command.sbatch: could not requeue (no scontrol?); exit 75" >&2
fi
exit "$status"
