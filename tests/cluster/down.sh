#!/usr/bin/env bash
# Removes what tests/cluster/up.sh made, by name: the namespaces mt-sw and
# mt-h1 .. (their veth pairs and the bridge go with them). Safe to run
# when none exist.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' |
    grep -E '^mt-(sw|h[0-9]+)$'); do
    # processes left in a host (a test that failed) go first
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null
    ip netns del "$ns"
done
exit 0
