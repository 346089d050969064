/* Private to the parameter server: sync_ps.c (the pieces, synchronous
 * steps) and ps_async.c (stale-synchronous steps) share this state. */
#ifndef MPITRAIN_PARALLEL_PS_INTERNAL_H
#define MPITRAIN_PARALLEL_PS_INTERNAL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mpitrain/sync.h"

typedef struct ps_piece {
    size_t lo, hi; /* arena range */
    int server;    /* its shard's server index */
} ps_piece;

struct mt_ps {
    ps_piece *piece;      /* every bucket's pieces, in bucket order */
    size_t *first;        /* (nb + 1): pieces of bucket b start here */
    MPI_Request *req;     /* pushes, receives and pulls of one step */
    size_t n_req, cap_req;
    float *recv;          /* server: (workers x shard) received pieces */
    size_t mine;          /* server: pieces of its shard per worker */
    int begin_rc;         /* an MPI error posting the receives */
    int self;             /* sync, colocated: this rank's worker index,
                             whose pieces of its own shard stay in place
                             (not sent to itself); -1 otherwise */
    /* ps_mode = async (ps_async.c) */
    int started;          /* receives posted, sparams filled */
    size_t staleness;
    float *sparams;       /* server: its own copy of the shard, which the
                             worker side of a colocated rank never reads
                             while it computes */
    float *reply;         /* server: (workers x shard) values being sent */
    MPI_Request *wreq;    /* server: (workers x (mine + 1)) a push */
    double *hdr;          /* server: (workers x 3) lr, clip factor, step */
    uint64_t *clock;      /* server: steps each worker has pushed */
    int64_t *want;        /* server: a pull owed once the slowest has
                             pushed this many steps; -1: none */
    MPI_Request *rsend;   /* server: (workers) the reply in flight */
    MPI_Request *freq;    /* server: (workers) fence requests */
    double *fmsg;         /* server: (workers x 2) a fence's step count
                             and number */
    int64_t *fwant;       /* server: a fence owed (as want); -1: none */
    uint64_t *fdone;      /* server: (workers) the number of the last
                             fence answered */
    uint64_t fence_no;    /* fences this rank has begun */
    double fence_at[2];   /* worker: its fence request */
    uint64_t steps;       /* steps this rank has finished */
    double head[3];       /* worker: lr, clip factor, step of its push */
    int nonfinite;        /* server: an update left a non-finite value */
    int err;              /* an MPI error while serving */
};

static inline int mt__ps_is_worker(const mt_sync *s)
{
    return (s->plan->role & MT_ROLE_WORKER) != 0;
}

static inline size_t mt__ps_shard_len(const mt_plan *p)
{
    return p->param_hi - p->param_lo;
}

/* MT_OK, or MT_EIO with "parameter server: <what> failed". */
int mt__ps_check(int mpi_rc, const char *what, char *err);
/* Sends the pieces of buckets [s->next, ready) to their servers,
 * appending the requests to ps->req. */
int mt__ps_push(mt_sync *s, size_t ready, char *err);

#endif
