#!/bin/sh
# Open MPI's remote shell (plm_rsh_agent) on the emulated cluster:
#   rsh.sh [options] HOST COMMAND...
# runs COMMAND in host HOST's network namespace (HOST: 10.77.0.(10 + i)
# or mt-hI) with its own hostname (a UTS namespace: Open MPI's session
# directory is named by hostname, and hosts sharing one collide).
while [ $# -gt 0 ]; do
    case $1 in -*) shift ;; *) break ;; esac
done
host=$1
shift
case $host in
10.77.0.*) i=$((${host##*.} - 10)) ;;
mt-h*) i=${host#mt-h} ;;
*) echo "rsh.sh: $host is not a host of the emulated cluster" >&2; exit 1 ;;
esac
exec ip netns exec "mt-h$i" unshare --uts /bin/sh -c "hostname mt-h$i; $*"
