#!/bin/sh
# Runs the layer, optimizer and MPI training tests (the shared-memory sum
# among them) once for every SIMD path this CPU has below its best (the
# rest of the suite runs the best one):
# MPITRAIN_ISA selects mpitrain's loops, OPENBLAS_CORETYPE the OpenBLAS
# kernel that a node with only that path would use, as `mpitrain
# --version` reports it. Paths the CPU lacks are listed as skipped, so a
# log shows what this machine could test.
set -u
build=${MPITRAIN_BUILDDIR:-.}
src=${MPITRAIN_SRCDIR:-..}
bin="$build/mpitrain"
have=$("$bin" --version | sed -n 's/.*this CPU has: \([a-z0-9 ]*\)).*/\1/p')
best=${have##* }
echo "SIMD paths on this CPU: $have (best: $best; the suite runs it)"
for isa in baseline avx2 avx512; do
    case " $have " in *" $isa "*) ;; *) echo "== $isa: not on this CPU, skipped"; continue ;; esac
done
status=0
for isa in $have; do
    [ "$isa" = "$best" ] && continue
    core=$(MPITRAIN_ISA=$isa "$bin" --version | sed -n 's/^OpenBLAS \([A-Za-z0-9]*\) core.*/\1/p')
    echo "== $isa (OpenBLAS $core)"
    for t in tests/test_layers tests/test_loss tests/test_optim; do
        MPITRAIN_ISA=$isa OPENBLAS_CORETYPE=$core "$build/$t" > "$build/$t.$isa.log" 2>&1
        rc=$?
        tail -1 "$build/$t.$isa.log"
        [ $rc -eq 0 ] || { echo "FAIL: $t on $isa (see $t.$isa.log)"; status=1; }
    done
    for t in tests/ring.mpi tests/train.mpi tests/checkpoint.mpi \
        tests/shm.mpi; do
        MPITRAIN_ISA=$isa OPENBLAS_CORETYPE=$core \
            sh "$src/tests/mpirun.sh" "$build/$t" > "$build/$t.$isa.log" 2>&1
        rc=$?
        grep -E "^(== |FAIL)" "$build/$t.$isa.log"
        [ $rc -eq 0 ] || { echo "FAIL: $t on $isa (see $t.$isa.log)"; status=1; }
    done
done
exit $status
