#!/usr/bin/env bash
# Stops what start-local-slurm.sh started (by its pid files) and removes
# its directory; a Slurm or munge of the machine's own is left alone.
set -u
dir=${MPITRAIN_SLURM_DIR:-/tmp/mpitrain-slurm}
for pidfile in "$dir/run/slurmd.pid" "$dir/run/slurmctld.pid" \
    "$dir/munge/munged.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
sleep 1
# A job step Slurm ended (the time-limit job) can leave its slurmstepd
# running after slurmd: ours carry slurmd's SLURM_CONF in their
# environment.
for p in $(pgrep -x slurmstepd); do
    { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null |
        grep -qx "SLURM_CONF=$dir/slurm.conf" && kill -9 "$p" 2>/dev/null
done
rm -rf "$dir"
