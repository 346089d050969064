/* Bus bandwidth of our ring allreduce against MPI_Allreduce, same run.
 *
 *   mpirun -np P build/bench/allreduce [--seg KIB] [--bf16] [--small KIB]
 *
 * For 4 KiB ... 64 MiB of floats, times both (alternating, best of
 * several repetitions, after a warm-up) and prints bus bandwidth as NCCL
 * defines it, 2 (P - 1) / P * bytes / time, and the ratio ring / MPI.
 * A benchmark, not a test: timings depend on the machine and its load. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/sync.h"

static double best_of(int reps, int use_ring, mt_ring *r, float *buf,
                      size_t n)
{
    double best = 1e30;
    char err[MT_ERR_LEN];
    for (int i = 0; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        if (use_ring) {
            if (mt_ring_allreduce(r, buf, n, err)) {
                fprintf(stderr, "allreduce: %s\n", err);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        } else {
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD);
        }
        t = MPI_Wtime() - t;
        /* The slowest rank defines the time of a collective. */
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX,
                      MPI_COMM_WORLD);
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    size_t seg_kib = 1024; /* the [parallel] segment_kb default */
    size_t small_kib = 0;  /* [parallel] ring_min_kb; 0: the pure ring */
    mt_compress c = MT_COMPRESS_NONE;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seg") && i + 1 < argc)
            seg_kib = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--bf16"))
            c = MT_COMPRESS_BF16;
        else if (!strcmp(argv[i], "--small") && i + 1 < argc)
            small_kib = (size_t)atol(argv[++i]);
    }
    const size_t max_n = (64u << 20) / sizeof(float);
    float *buf = malloc(max_n * sizeof *buf);
    mt_ring r;
    char err[MT_ERR_LEN];
    if (!buf ||
        mt_ring_init(&r, MPI_COMM_WORLD, max_n, seg_kib << 10, c, 1, err)) {
        fprintf(stderr, "allreduce: setup failed\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    mt_ring_set_small(&r, (small_kib << 10) / sizeof(float));
    for (size_t i = 0; i < max_n; i++)
        buf[i] = 1.0f / (float)(1 + i % 97);
    if (rank == 0)
        printf("%d ranks, segment %zu KiB, payload %s\n%10s %12s %12s %7s\n",
               P, seg_kib, c == MT_COMPRESS_BF16 ? "bf16" : "float32",
               "bytes", "MPI GB/s", "ring GB/s", "ratio");
    for (size_t bytes = 4096; bytes <= (64u << 20); bytes *= 4) {
        size_t n = bytes / sizeof(float);
        int reps = bytes <= (1u << 20) ? 50 : bytes <= (16u << 20) ? 10 : 4;
        best_of(2, 0, &r, buf, n); /* warm-up both paths */
        best_of(2, 1, &r, buf, n);
        double tm = 1e30, tr = 1e30;
        for (int round = 0; round < 3; round++) {
            double a = best_of(reps, 0, &r, buf, n);
            double b = best_of(reps, 1, &r, buf, n);
            tm = a < tm ? a : tm;
            tr = b < tr ? b : tr;
        }
        double f = P > 1 ? 2.0 * (P - 1) / P : 1.0;
        if (rank == 0)
            printf("%10zu %12.2f %12.2f %6.2fx\n", bytes, f * bytes / tm / 1e9,
                   f * bytes / tr / 1e9, tm / tr);
    }
    mt_ring_free(&r);
    free(buf);
    MPI_Finalize();
    return 0;
}
