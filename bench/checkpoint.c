/* Checkpoint write speed against plain fwrite of the same bytes, same run.
 *
 *   mpirun -np P build/bench/checkpoint [DIR]
 *
 * Saves LeNet-5 (62k parameters) and an MLP of about 50 MB of weights
 * (784-4096-2048-10, with Adam: 3 x 46 MB) with mt_ckpt_save (parallel
 * HDF5, checksums, fsync, rename), and writes the same bytes with fwrite +
 * fsync from rank 0. Prints the best of 3 of each, MB/s and the ratio, and
 * what a checkpoint every minute would cost. A benchmark, not a test. */
#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpitrain/checkpoint.h"
#include "mpitrain/core.h"
#include "mpitrain/model.h"
#include "mpitrain/optim.h"

static double fwrite_time(const char *dir, const float *const *bufs,
                          size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/raw.bin", dir);
    double t = MPI_Wtime();
    FILE *f = fopen(path, "wb");
    for (int k = 0; f && k < 3; k++)
        if (fwrite(bufs[k], sizeof(float), n, f) != n)
            break;
    if (f) {
        fflush(f);
        fsync(fileno(f));
        fclose(f);
    }
    t = MPI_Wtime() - t;
    unlink(path);
    return t;
}

static void bench(const char *name, const mt_layer_spec *specs, size_t n,
                  mt_shape in, const char *dir, int rank, int size)
{
    mt_model m;
    mt_optim o;
    char err[MT_ERR_LEN];
    mt_optim_cfg oc = {.kind = MT_OPT_ADAM, .lr = 1e-3f, .beta1 = 0.9f,
                       .beta2 = 0.999f, .eps = 1e-8f};
    if (mt_model_init(&m, specs, n, in, 1, 1, err) ||
        mt_optim_init(&o, &oc, m.n_params, err)) {
        fprintf(stderr, "checkpoint bench: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (size_t i = 0; i < m.n_params; i++)
        o.m[i] = o.v[i] = m.params[i];
    mt_ckpt_state st = {.step = 1, .ranks = size};
    double best = 1e30, raw = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        if (mt_ckpt_save(MPI_COMM_WORLD, dir, &m, &o, &st, "bench", "", 1, 0,
                         err)) {
            fprintf(stderr, "checkpoint bench: %s\n", err);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        t = MPI_Wtime() - t;
        best = t < best ? t : best;
        if (rank == 0) {
            const float *bufs[3] = {m.params, o.m, o.v};
            double r = fwrite_time(dir, bufs, m.n_params);
            raw = r < raw ? r : raw;
        }
    }
    double mb = 3.0 * (double)m.n_params * sizeof(float) / 1e6;
    if (rank == 0)
        printf("%-8s %2d ranks %9.1f MB  checkpoint %7.3f s %7.0f MB/s  "
               "fwrite %7.3f s %7.0f MB/s  ratio %.2fx  every minute: "
               "%.2f%%\n",
               name, size, mb, best, mb / best, raw, mb / raw, raw / best,
               100.0 * best / 60.0);
    mt_optim_free(&o);
    mt_model_free(&m);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *dir = argc > 1 ? argv[1] : "/tmp/mpitrain-bench-ckpt";
    mt_layer_spec lenet[] = {
        {.kind = MT_CONV2D, .filters = 6, .size = 5, .stride = 1, .pad = 2},
        {.kind = MT_RELU},
        {.kind = MT_MAXPOOL, .size = 2, .stride = 2},
        {.kind = MT_CONV2D, .filters = 16, .size = 5, .stride = 1},
        {.kind = MT_RELU},
        {.kind = MT_MAXPOOL, .size = 2, .stride = 2},
        {.kind = MT_FLATTEN},
        {.kind = MT_DENSE, .units = 120},
        {.kind = MT_DENSE, .units = 84},
        {.kind = MT_DENSE, .units = 10}};
    mt_layer_spec mlp[] = {{.kind = MT_FLATTEN},
                           {.kind = MT_DENSE, .units = 4096},
                           {.kind = MT_DENSE, .units = 2048},
                           {.kind = MT_DENSE, .units = 10}};
    bench("lenet5", lenet, sizeof lenet / sizeof *lenet,
          (mt_shape){1, 28, 28}, dir, rank, size);
    bench("mlp", mlp, sizeof mlp / sizeof *mlp, (mt_shape){1, 28, 28}, dir,
          rank, size);
    MPI_Finalize();
    return 0;
}
