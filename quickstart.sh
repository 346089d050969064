#!/usr/bin/env bash
# mpitrain quickstart for a fresh Debian 12 machine.
#
#   ./quickstart.sh          install what is needed, build, convert
#                            Fashion-MNIST to HDF5, train LeNet-5 on 2 ranks
#                            and print the test accuracy
#   ./quickstart.sh check    install what is needed, build, run every test
#
# Installs Debian packages with apt-get (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

packages=(build-essential autoconf automake libtool pkg-config
    libopenmpi-dev openmpi-bin libopenblas-dev libhdf5-openmpi-dev
    hdf5-tools libcmocka-dev libinih-dev libjansson-dev zlib1g-dev valgrind
    libdnnl-dev
    iproute2
    python3-h5py gnuplot-nox
    dataset-fashion-mnist)
# The Slurm test's packages: tests/slurm/start-local-slurm.sh installs them.

install_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    echo "quickstart: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

build() {
    autoreconf -fi
    mkdir -p build
    cd build
    [ -f Makefile ] || ../configure
    make -j"$(nproc)"
    cd "$top"
}

# mpirun refuses root unless told; CI and containers run as root.
mpirun_flags=(--oversubscribe)
[ "$(id -u)" -ne 0 ] || mpirun_flags+=(--allow-run-as-root)

install_packages
build
case "${1:-}" in
check)
    cd build
    make check
    # Emulated hosts over TCP (network namespaces) and a real one-node
    # Slurm (root only).
    if [ "$(id -u)" -eq 0 ]; then make check-cluster check-slurm; else
        echo "quickstart: not root: make check-cluster check-slurm skipped"; fi
    ;;
"")
    [ -f data/fashion-mnist/t10k.h5 ] ||
        build/mpitrain convert fashion-mnist data/fashion-mnist
    mpirun "${mpirun_flags[@]}" -np 2 build/mpitrain train \
        examples/lenet5-fashion.ini
    build/mpitrain eval examples/lenet5-fashion.ini \
        --weights runs/lenet5-fashion/weights.h5
    ;;
*)
    echo "usage: $0 [check]" >&2
    exit 2
    ;;
esac
