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
rm -rf "$dir"
