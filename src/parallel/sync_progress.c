/* The progress thread ([parallel] progress_thread, sync.h).
 *
 * MPI moves a nonblocking reduction only while some thread is inside an
 * MPI call (Open MPI has no progress thread of its own: ompi_info says
 * "OMPI progress: no"). Called only where backward finishes a layer, a
 * bucket of a few hundred KB over TCP advances by one fragment or one
 * round per call, so it mostly moves after backward, in mt_sync_finish.
 * This thread calls the strategy's progress every POLL_NS from the first
 * bucket backward finishes to mt_sync_finish; the main thread makes no
 * MPI call in that window (layer_done only publishes how many buckets are
 * ready), so MPI_THREAD_SERIALIZED is enough. It sleeps between polls: on
 * a node with one rank per core it must not take a core from backward.
 *
 * Off by default: on the 2-core VMs here its wake-ups cost backward more
 * than the earlier transfers save (LeNet-5 on 2 emulated hosts at
 * 1 Gbit/s, 0.05 MB buckets: 10.6k samples/s with it, 12.2k without;
 * polling from the start of each step at 20 us: 5.0k against 15.2k on
 * shared memory, where each wake-up of a sleeping thread is a timer exit
 * of the VM). Measured 2026-12-02 on an Intel Xeon (model 207) guest. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "mpitrain/core.h"
#include "parallel/sync_internal.h"

/* A 64 KB TCP fragment takes 50 us at 10 Gbit/s, 500 us at 1. */
#define POLL_NS 50000L

struct mt__progress {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int run; /* 1 from begin to finish */
    int quit;
    int busy;             /* the thread is in a window (under mu) */
    atomic_size_t ready;  /* buckets backward has finished */
    size_t main_ready;    /* the main thread's copy */
    int rc;               /* the first error of this window */
    char err[MT_ERR_LEN];
};

static void *loop(void *arg)
{
    mt_sync *s = arg;
    struct mt__progress *p = s->thread;
    /* Sleeps of 50 us, not the default slack's 50 us more. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* Asleep, without a timer, until backward has a bucket ready. */
        while (!p->quit &&
               !(atomic_load(&p->run) && atomic_load(&p->ready) > 0))
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit)
            break;
        p->busy = 1;
        pthread_mutex_unlock(&p->mu);
        while (atomic_load(&p->run)) {
            if (p->rc == MT_OK)
                p->rc = s->ops->progress(s, atomic_load(&p->ready), p->err);
            struct timespec ts = {0, POLL_NS};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&p->mu);
        p->busy = 0;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int mt__progress_start(mt_sync *s, char *err)
{
    struct mt__progress *p = mt_calloc(1, sizeof *p);
    if (!p) {
        mt_seterr(err, "sync: out of memory for the progress thread");
        return MT_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    s->thread = p;
    int e = pthread_create(&p->tid, NULL, loop, s);
    if (e) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        mt_free(p);
        s->thread = NULL;
        mt_seterr(err, "sync: cannot start the progress thread: %s",
                  strerror(e));
        return MT_EIO;
    }
    return MT_OK;
}

void mt__progress_stop(mt_sync *s)
{
    struct mt__progress *p = s->thread;
    if (!p)
        return;
    /* A run that ends between begin and finish (an error) ends the
     * window too, or the thread would poll on and never see quit. */
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->run, 0);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->tid, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    mt_free(p);
    s->thread = NULL;
}

void mt__progress_begin(mt_sync *s)
{
    struct mt__progress *p = s->thread;
    pthread_mutex_lock(&p->mu);
    p->rc = MT_OK;
    p->main_ready = 0;
    atomic_store(&p->ready, 0);
    atomic_store(&p->run, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void mt__progress_ready(mt_sync *s, size_t layer)
{
    struct mt__progress *p = s->thread;
    size_t k = mt__ready_from(s, p->main_ready, layer);
    if (k == p->main_ready)
        return;
    p->main_ready = k;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->ready, k);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int mt__progress_end(mt_sync *s, char *err)
{
    struct mt__progress *p = s->thread;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->run, 0);
    while (p->busy)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    if (p->rc)
        mt_seterr(err, "%s", p->err);
    return p->rc;
}
