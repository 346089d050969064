#!/bin/sh
# mpirun on the emulated cluster (tests/cluster/up.sh), for tests/mpirun.sh
# as MPIRUN: the ranks go to MPITRAIN_CLUSTER_HOSTS hosts (default 2), as
# many per host as fill -np evenly (by slot: consecutive ranks share a
# host), and talk over TCP on the cluster's subnet only. mpirun itself
# runs in the switch namespace.
#   MPIRUN=tests/cluster/mpirun.sh tests/mpirun.sh PROGRAM
here=$(cd "$(dirname "$0")" && pwd)
hosts=${MPITRAIN_CLUSTER_HOSTS:-2}
np=1
prev=
for a in "$@"; do
    [ "$prev" = -np ] && np=$a
    prev=$a
done
per=$(((np + hosts - 1) / hosts))
list=
for i in $(seq 1 "$hosts"); do
    list=$list${list:+,}10.77.0.$((10 + i)):$per
done
exec ip netns exec mt-sw unshare --uts /bin/sh -c 'hostname mt-sw; exec "$@"' \
    sh mpirun --host "$list" \
    --mca plm_rsh_agent "$here/rsh.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_if_include 10.77.0.0/24 --mca mpi_yield_when_idle 1 \
    --bind-to none "$@"
