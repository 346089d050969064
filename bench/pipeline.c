/* Pipeline bubble measured against theory, same run.
 *
 *   mpirun -np P build/bench/pipeline [UNITS [LAYERS [BATCH]]]
 *
 * A deep MLP (LAYERS dense layers of UNITS, relu; default 8 x 1024) on
 * random data, the world's ranks as its stages (layers cut evenly), one
 * step of BATCH samples (default 256) per repetition. For gpipe, 1f1b and
 * zb and M = 1, 4, 8, 16 micro-batches it prints the step time (best of
 * 5 after a warm-up), the measured bubble (1 - the stages' busy seconds,
 * their step time less their time blocked on neighbours, over P x the
 * step time), theory ((P - 1) / (M + P - 1)), the schedule simulation's
 * bubble with unit costs, and the forwards recomputed; each with the
 * stages recomputing their activations before the backward
 * ([parallel] recompute = true) and keeping them (false). A benchmark,
 * not a test: timings depend on the machine and its load. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/pipeline.h"
#include "mpitrain/train.h"

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench/pipeline: %s: %s\n", what, err);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The model from an INI text written to a temporary file. */
static void build(mt_model *m, int units, int layers, size_t batch, int rank)
{
    char path[64], err[MT_ERR_LEN];
    snprintf(path, sizeof path, "/tmp/mt_bench_pipe_%d.ini", rank);
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, "cannot write");
    fprintf(f, "[data]\ntrain = none.h5\n[train]\nbatch = %zu\n", batch);
    for (int i = 0; i < layers; i++)
        fprintf(f, "[dense]\nunits = %d\nactivation = relu\n", units);
    fprintf(f, "[dense]\nunits = 10\n");
    fclose(f);
    mt_config c;
    if (mt_config_load(&c, path, NULL, 0, err))
        die(path, err);
    remove(path);
    if (mt_model_from_config(&c, (mt_shape){1, 1, (size_t)units}, batch, m,
                             err))
        die("model", err);
    mt_config_free(&c);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int units = argc > 1 ? atoi(argv[1]) : 1024;
    int layers = argc > 2 ? atoi(argv[2]) : 8;
    size_t G = argc > 3 ? (size_t)atoi(argv[3]) : 256;
    mt_model m;
    build(&m, units, layers, G, rank);
    float *x = mt_calloc(G * (size_t)units, sizeof *x);
    int32_t *labels = mt_calloc(G, sizeof *labels);
    for (size_t i = 0; x && labels && i < G * (size_t)units; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; labels && i < G; i++)
        labels[i] = (int32_t)(i % 10);
    mt_pipe_stage st = {&m, (size_t)rank * m.n_layers / (size_t)size,
                        (size_t)(rank + 1) * m.n_layers / (size_t)size,
                        rank, size, MPI_COMM_WORLD, 0};
    mt_pipe_costs *unit = mt_calloc((size_t)size, sizeof *unit);
    for (int s = 0; unit && s < size; s++)
        unit[s] = (mt_pipe_costs){1.0, 1.0, 1.0};
    if (rank == 0)
        printf("pipeline: %d stages, %d dense layers of %d, batch %zu\n"
               "activations  schedule   M  step ms  bubble  theory  "
               "simulated  recomputed  work MiB  held\n",
               size, layers, units, G);
    static const int Ms[] = {1, 4, 8, 16};
    for (int recompute = 1; recompute >= 0; recompute--)
    for (int sch = MT_PIPE_GPIPE; sch <= MT_PIPE_ZB; sch++)
        for (int k = 0; k < 4; k++) {
            mt_pipe_plan p;
            char err[MT_ERR_LEN];
            if (mt_pipe_plan_make(&p, (mt_pipe_schedule)sch, size, Ms[k],
                                  unit, err))
                die("plan", err);
            mt_pipe_batch b = {.x = x, .labels = labels, .G = G,
                               .loss = MT_LOSS_SOFTMAX_CE,
                               .ctx = {.train = 1, .seed = 1}};
            double best = 1e30, busy = 0.0, loss;
            mt_pipe_stats s = {0};
            mt_pipe_work w;
            if (mt_pipe_work_init(&w, &st, (mt_pipe_schedule)sch, G,
                                  (size_t)Ms[k], recompute, err))
                die("buffers", err);
            for (int rep = 0; rep < 6; rep++) {
                MPI_Barrier(MPI_COMM_WORLD);
                if (mt_pipe_step(&p, &st, &w, &b, &loss, &s, err))
                    die("step", err);
                double t = s.seconds, work = s.seconds - s.wait_s;
                MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX,
                              MPI_COMM_WORLD);
                MPI_Allreduce(MPI_IN_PLACE, &work, 1, MPI_DOUBLE, MPI_SUM,
                              MPI_COMM_WORLD);
                if (rep > 0 && t < best) { /* rep 0 warms up */
                    best = t;
                    busy = work;
                }
            }
            unsigned long long rc = s.recomputed;
            MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_UNSIGNED_LONG_LONG,
                          MPI_SUM, MPI_COMM_WORLD);
            /* memory: the executor's buffers (every micro-batch's stage
             * input, and zb's copies for W) on the rank with most, and
             * the schedule's most micro-batches between F and their last
             * pass (what a design keeping activations would hold) */
            double mib = (double)w.bytes / 1048576.0;
            MPI_Allreduce(MPI_IN_PLACE, &mib, 1, MPI_DOUBLE, MPI_MAX,
                          MPI_COMM_WORLD);
            int held = 0;
            for (int q = 0; q < size; q++)
                held = p.peak_held[q] > held ? p.peak_held[q] : held;
            if (rank == 0)
                printf("%-11s  %-8s %3d  %7.1f  %6.3f  %6.3f  %9.3f  "
                       "%10llu  %8.1f  %4d\n",
                       recompute ? "recomputed" : "kept",
                       mt_pipe_schedule_names[sch], Ms[k], best * 1e3,
                       1.0 - busy / ((double)size * best),
                       (double)(size - 1) / (double)(Ms[k] + size - 1),
                       p.bubble, rc, mib, held);
            mt_pipe_work_free(&w);
            mt_pipe_plan_free(&p);
        }
    mt_model_free(&m);
    free(x);
    free(labels);
    free(unit);
    MPI_Finalize();
    return 0;
}
