/* The deterministic strategy: a chain of ranks adding fixed groups in
 * their global order; see mt_chain_sum in sync.h.
 *
 * 3 ranks, groups g0..g4 owned as r0: g0 g1, r1: g2, r2: g3 g4:
 *   r0: acc = g0 + g1               -> r1
 *   r1: acc = (g0 + g1) + g2        -> r2
 *   r2: acc = ((g0 + g1) + g2) + g3 + g4, broadcast to all
 * On one rank the same additions happen in the same order. */
#include <mpi.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/sync.h"
#include "mpitrain/watchdog.h"

int mt_chain_sum(MPI_Comm comm, float *acc, const float *groups,
                 size_t n_groups, size_t n, double *total,
                 const double *sums, size_t n_sums, char *err)
{
    int rank, size, rc = MPI_SUCCESS;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(acc, 0, n * sizeof(float));
    memset(total, 0, n_sums * sizeof(double));
    mt_watch("deterministic gradient chain (MPI_Recv, MPI_Send, MPI_Bcast)");
    if (rank > 0) {
        rc |= MPI_Recv(acc, (int)n, MPI_FLOAT, rank - 1, MT_TAG_CHAIN_GRADS,
                       comm, MPI_STATUS_IGNORE);
        rc |= MPI_Recv(total, (int)n_sums, MPI_DOUBLE, rank - 1,
                       MT_TAG_CHAIN_SUMS, comm, MPI_STATUS_IGNORE);
    }
    for (size_t k = 0; k < n_groups; k++) {
        const float *g = groups + k * n;
        for (size_t i = 0; i < n; i++)
            acc[i] += g[i];
        for (size_t j = 0; j < n_sums; j++)
            total[j] += sums[n_sums * k + j];
    }
    if (rank < size - 1) {
        rc |= MPI_Send(acc, (int)n, MPI_FLOAT, rank + 1, MT_TAG_CHAIN_GRADS,
                       comm);
        rc |= MPI_Send(total, (int)n_sums, MPI_DOUBLE, rank + 1,
                       MT_TAG_CHAIN_SUMS, comm);
    }
    rc |= MPI_Bcast(acc, (int)n, MPI_FLOAT, size - 1, comm);
    rc |= MPI_Bcast(total, (int)n_sums, MPI_DOUBLE, size - 1, comm);
    if (rc != MPI_SUCCESS) {
        mt_seterr(err, "deterministic gradient chain failed");
        return MT_EIO;
    }
    return MT_OK;
}
