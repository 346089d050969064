/* mpitrain distribution helpers: agreeing on errors so no rank is left in a
 * collective, and gradient averaging. The ring-allreduce, buckets and the
 * parameter server grow here (DESIGN.md decision 5). */
#ifndef MPITRAIN_DIST_H
#define MPITRAIN_DIST_H

#include <mpi.h>
#include <stddef.h>

/* Every rank calls this with its local rc. If any rank failed, all return
 * the failing rc and receive, in err, the message of the lowest failing
 * rank prefixed with its number; otherwise MT_OK. It is the collective to
 * call before any other collective that a local error could skip. */
int mt_dist_agree(MPI_Comm comm, int rc, char *err);

/* Sums buf[0..n) over all ranks in place (MPI_Allreduce). */
int mt_dist_allreduce_sum(MPI_Comm comm, float *buf, size_t n, char *err);
/* Same for doubles (loss sums and counts, exact across ranks). */
int mt_dist_allreduce_sum_d(MPI_Comm comm, double *buf, size_t n, char *err);

/* Rank r's contiguous share [*lo, *hi) of n items split over `size`
 * ranks: uneven splits differ by at most one item. */
void mt_dist_share(size_t n, int rank, int size, size_t *lo, size_t *hi);

#endif
