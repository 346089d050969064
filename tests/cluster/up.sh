#!/usr/bin/env bash
# An emulated cluster on this machine (root): N hosts, network namespaces
# mt-h1 .. mt-hN at 10.77.0.11 .. 10.77.0.(10 + N)/24, each joined by a
# veth pair (eth0 in the host, pI in the switch) to a bridge in the
# switch namespace mt-sw (10.77.0.1), where mpirun runs. Every link is
# shaped to RATE (default 1gbit) in both directions with tc tbf (these
# kernels have no netem: bandwidth can be shaped, latency cannot).
# Nothing is made outside those namespaces; down.sh removes them by name.
#
#   tests/cluster/up.sh N [RATE]
set -euo pipefail
n=${1:-2}
rate=${2:-1gbit}
[ "$(id -u)" -eq 0 ] || { echo "cluster: needs root (network namespaces)" >&2; exit 77; }
command -v ip >/dev/null || { echo "cluster: needs ip and tc (iproute2)" >&2; exit 77; }
bash "$(dirname "$0")/down.sh"
# tbf: the bucket holds 0.5 ms of traffic at the rate, so a message goes
# at the link's rate from its first bytes. A bucket of 2 MB (as tried
# first) let every burst below 2 MB through at the veth's own speed:
# 256 KiB-1 MiB allreduces measured 0.85-1.09 GB/s "at 1 Gbit/s", 8x the
# link; 64 KB gives 0.12 GB/s at every size (0.125 is the link), 16 KB
# falls short (0.07-0.10). Measured 2026-12-02, bench/allreduce, 2 hosts.
# The veths' GSO packets are kept to a quarter of the bucket: with 64 KB
# ones (the default) in a 64 KB bucket, two TCP streams in opposite
# directions got 78 MB/s each where one alone got 112 (a full-duplex 1 GbE
# link carries about 112 each way); at 16 KB, 114 each. Not smaller than
# needed: at 10 Gbit/s 16 KB packets cost the 2 cores so much that the
# MLP ran at a third of its 64 KB speed.
bits=$(echo "$rate" | sed -E 's/^([0-9]+)gbit$/\1000000000/; s/^([0-9]+)mbit$/\1000000/')
case $bits in *[!0-9]* | "") echo "cluster: rate $rate: use Nmbit or Ngbit" >&2; exit 2 ;; esac
burst=$((bits / 8 / 2000))
[ "$burst" -ge 16384 ] || burst=16384
gso=$((burst / 4 < 65536 ? burst / 4 : 65536))
shape() { ip netns exec "$1" tc qdisc add dev "$2" root tbf rate "$rate" \
    burst "$burst" latency 20ms; }
ip netns add mt-sw
ip -n mt-sw link set lo up
ip -n mt-sw link add mt-br type bridge
ip -n mt-sw addr add 10.77.0.1/24 dev mt-br
ip -n mt-sw link set mt-br up
for i in $(seq 1 "$n"); do
    h=mt-h$i
    ip netns add "$h"
    ip -n "$h" link set lo up
    ip -n mt-sw link add "p$i" type veth peer name eth0 netns "$h"
    ip -n mt-sw link set "p$i" master mt-br up
    ip -n "$h" addr add "10.77.0.$((10 + i))/24" dev eth0
    ip -n "$h" link set eth0 gso_max_size "$gso" up
    ip -n mt-sw link set "p$i" gso_max_size "$gso"
    shape "$h" eth0
    shape mt-sw "p$i"
done
echo "cluster: $n hosts at $rate"
