#!/bin/sh
# [parallel] shared_memory where /dev/shm is too small for its window (a
# container's /dev/shm is 64 MiB by default; a tmpfs that runs out faults
# with SIGBUS at first touch instead of failing the allocation): in a
# mount namespace with 24 MiB of tmpfs over /dev/shm, a 3.2M-parameter
# model on 2 ranks (a 50 MiB window) must, with auto, go by messages and
# say why; with true be refused on every rank, naming /dev/shm, before
# training. Root only (mount namespaces): skipped (77) elsewhere.
set -u
build=${MPITRAIN_BUILDDIR:-.}
bin="$(cd "$build" && pwd)/mpitrain"
[ "$(id -u)" -eq 0 ] || { echo "needs root (mount namespace): skipped"; exit 77; }
[ -r /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || {
    echo "no Fashion-MNIST (dataset-fashion-mnist): skipped"; exit 77; }
unshare -m true 2>/dev/null || { echo "no mount namespaces here: skipped"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" convert fashion-mnist "$dir/fm" > /dev/null || exit 1
cat > "$dir/wide.ini" <<INI
[run]
dir = $dir/run
progress = none
[data]
train = $dir/fm/t10k.h5
validation = 0
[train]
epochs = 1
batch = 64
[flatten]
[dense]
units = 4096
activation = relu
[dense]
units = 10
[softmax]
INI
# run MODE: a dry run on 2 ranks with /dev/shm of 24 MiB; its log in
# $dir/MODE.log, its status returned (124 after 2 minutes: without the
# check a rank's SIGBUS left the others waiting).
run() {
    unshare -m sh -c 'mount -t tmpfs -o size=24m tmpfs /dev/shm &&
        exec timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe \
        -np 2 "$@"' sh \
        "$bin" train "$dir/wide.ini" --dry-run \
        --set parallel.shared_memory="$1" > "$dir/$1.log" 2>&1
}
if ! run auto; then
    echo "FAIL: auto did not fall back to messages:"; cat "$dir/auto.log"; exit 1
fi
grep -q "gradients: allreduce by messages (shared_memory: /dev/shm too small" \
    "$dir/auto.log" || {
    echo "FAIL: auto did not say why:"; cat "$dir/auto.log"; exit 1; }
echo "auto: $(grep -m1 '^gradients:' "$dir/auto.log")"
if run true; then
    echo "FAIL: true was not refused:"; cat "$dir/true.log"; exit 1
fi
n=$(grep -c "shared_memory: the node's window needs .* MiB of /dev/shm" "$dir/true.log")
[ "$n" -ge 1 ] || { echo "FAIL: true's refusal does not name /dev/shm:"
    cat "$dir/true.log"; exit 1; }
grep -q "dry run:" "$dir/true.log" && { echo "FAIL: true went on"; exit 1; }
echo "true: $(grep -m1 'window needs' "$dir/true.log")"
