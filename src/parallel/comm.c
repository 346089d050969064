#include "mpitrain/dist.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "mpitrain/core.h"
#include "mpitrain/watchdog.h"

int mt_dist_agree(MPI_Comm comm, int rc, char *err)
{
    int rank, size, first;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = rc ? rank : size;
    mt_watch("error agreement (MPI_Allreduce)");
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
        return rc ? rc : MT_EIO;
    if (first == size)
        return MT_OK;
    char msg[MT_ERR_LEN] = "";
    if (rank == first)
        snprintf(msg, sizeof msg, "%s", err ? err : "");
    int code = rc;
    MPI_Bcast(&code, 1, MPI_INT, first, comm);
    MPI_Bcast(msg, MT_ERR_LEN, MPI_CHAR, first, comm);
    /* A message that went through an earlier agreement already names its
     * rank (nested set-up steps agree more than once). */
    char prefix[32];
    snprintf(prefix, sizeof prefix, "rank %d: ", first);
    if (size > 1 && strncmp(msg, prefix, strlen(prefix)) != 0)
        mt_seterr(err, "%s%s", prefix, msg);
    else
        mt_seterr(err, "%s", msg);
    return code;
}

/* MPI counts are int: reduce in pieces below INT_MAX. */
static int reduce_chunks(MPI_Comm comm, void *buf, size_t n, size_t elem,
                         MPI_Datatype t, char *err)
{
    const size_t max = (size_t)INT_MAX / 2;
    for (size_t off = 0; off < n; off += max) {
        int cnt = (int)(n - off < max ? n - off : max);
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, cnt, t,
                          MPI_SUM, comm) != MPI_SUCCESS) {
            mt_seterr(err, "MPI_Allreduce of %zu values failed", n);
            return MT_EIO;
        }
    }
    return MT_OK;
}

int mt_dist_allreduce_sum(MPI_Comm comm, float *buf, size_t n, char *err)
{
    return reduce_chunks(comm, buf, n, sizeof(float), MPI_FLOAT, err);
}

int mt_dist_allreduce_sum_d(MPI_Comm comm, double *buf, size_t n, char *err)
{
    return reduce_chunks(comm, buf, n, sizeof(double), MPI_DOUBLE, err);
}

void mt_dist_share(size_t n, int rank, int size, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)rank / (size_t)size;
    *hi = n * (size_t)(rank + 1) / (size_t)size;
}
