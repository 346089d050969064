#!/usr/bin/env bash
# A one-node Slurm for the tests: Debian's slurm-wlm and munge, a
# slurm.conf for this machine under $MPITRAIN_SLURM_DIR (default
# /tmp/mpitrain-slurm), munged, slurmctld and slurmd started, and a wait
# until the node is idle. Run as root. stop-local-slurm.sh undoes it.
# Prints the line to source for the client tools:
#   export SLURM_CONF=$MPITRAIN_SLURM_DIR/slurm.conf
set -euo pipefail
dir=${MPITRAIN_SLURM_DIR:-/tmp/mpitrain-slurm}
[ "$(id -u)" -eq 0 ] || { echo "start-local-slurm.sh: run as root" >&2; exit 2; }

missing=()
for p in slurm-wlm munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
        grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$dir"/{state,spool,log,munge,run}
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)

# munge: a key of our own, its own socket, so that a munged already on
# the machine is left alone.
key="$dir/munge/munge.key"
[ -s "$key" ] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
chmod 400 "$key"
sock="$dir/munge/munge.socket"
if ! [ -S "$sock" ] || ! munge -n -S "$sock" >/dev/null 2>&1; then
    munged --force --key-file="$key" --socket="$sock" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
        --seed-file="$dir/munge/seed"
fi

# Linux process tracking and no cgroups: containers often have no
# writable cgroup tree.
cat > "$dir/slurm.conf" <<EOF
ClusterName=mpitrain-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
AuthInfo=socket=$sock,cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
export SLURM_CONF="$dir/slurm.conf"

pkill -f "slurmctld.*$dir" 2>/dev/null || true
pkill -f "slurmd.*$dir" 2>/dev/null || true
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"

for _ in $(seq 1 60); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case $state in
    idle*) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;;
    esac
    sleep 0.5
done
echo "start-local-slurm.sh: the node did not become idle (state '$state');" \
    "logs in $dir/log" >&2
exit 1
