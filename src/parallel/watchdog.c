/* The watchdog thread and its roll call; see watchdog.h.
 *
 * Roll call, with rank 1 stopped (kill -STOP) and 3 ranks, deadline 10 s:
 *
 *   t = 0    ranks 0 and 2 enter the gradient allreduce; rank 1 never does
 *   t = 10   rank 0's watchdog: 10 s in one operation. It sends "where are
 *            you?" (query, id 1) to ranks 1 and 2, on every address they
 *            published at start-up
 *   t = 10   rank 2's watchdog answers: gradient allreduce, step 37, 10 s
 *   t = 12   no answer from rank 1 in ROLLCALL_S: rank 0 reports
 *            "rank 0: no progress for 10 s (deadline_s = 10) in gradient
 *            allreduce at step 37; no answer from rank 1 (stopped, hung
 *            or its node is gone)"; rank 2 does the same at about the
 *            same time.
 *
 * A rank's answer says what its main thread last marked and for how long,
 * so a rank stuck in its own computation is named with that operation. */
#include "mpitrain/watchdog.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mpitrain/core.h"
#include "mpitrain/dist.h"

#define MAX_ADDRS 4        /* IPv4 addresses published per rank */
#define ROLLCALL_S 2.0     /* how long the roll call waits for answers */
#define LINGER_S 3.0       /* answering on after the report */
#define POLL_MS 200        /* the watchdog's wake-up interval */
#define REPORT_LEN 4096
#define OP_LEN 64

typedef struct peer_addr {
    uint32_t ip[MAX_ADDRS]; /* network byte order */
    uint16_t port;          /* network byte order */
    uint16_t n_ip;
} peer_addr;

/* One datagram: a query (kind 1) or an answer (kind 2). Ranks of one job
 * run the same binary on the same architecture, so the struct travels as
 * it is; the job token keeps stray datagrams out. */
typedef struct msg {
    uint64_t token;
    uint32_t kind;
    int32_t rank;
    uint64_t id;   /* which roll call */
    uint64_t seq;  /* marks so far */
    uint64_t step;
    double idle_s; /* time in op so far */
    char op[OP_LEN];
} msg;

typedef struct answer {
    int seen;
    uint64_t seq, step;
    double idle_s;
    char op[OP_LEN];
} answer;

static struct {
    /* Written by the main thread, read by the watchdog. */
    _Atomic(const char *) op;
    _Atomic uint64_t step;
    _Atomic uint64_t seq;    /* marks so far */
    _Atomic int64_t mark_ns; /* when the current op began */
    atomic_int quit;
    /* Set before the thread starts, then read only. */
    int running, fd, rank, size;
    double deadline_s;
    uint64_t token;
    peer_addr *peers; /* (size) */
    answer *answers;  /* (size), the watchdog thread's own */
    answer *before;   /* (size): marks at the roll call before (seq) */
    mt_watchdog_fn fn;
    void *user;
    pthread_t thread;
    uint64_t rollcall_id;
    int64_t next_rollcall_ns; /* no roll call before then */
} W = {.fd = -1};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void mt_watch(const char *op)
{
    atomic_store_explicit(&W.op, op, memory_order_relaxed);
    atomic_store_explicit(&W.mark_ns, now_ns(), memory_order_relaxed);
    atomic_fetch_add_explicit(&W.seq, 1, memory_order_release);
}

void mt_watch_step(uint64_t step)
{
    atomic_store_explicit(&W.step, step, memory_order_relaxed);
}

static double idle_s(void)
{
    return (double)(now_ns() - atomic_load(&W.mark_ns)) * 1e-9;
}

static const char *current_op(void)
{
    const char *op = atomic_load(&W.op);
    return op ? op : "start-up";
}

static void send_to(int r, const msg *m)
{
    const peer_addr *p = &W.peers[r];
    for (int i = 0; i < p->n_ip; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = p->port};
        a.sin_addr.s_addr = p->ip[i];
        sendto(W.fd, m, sizeof *m, MSG_DONTWAIT, (struct sockaddr *)&a,
               sizeof a);
    }
}

/* Answers every query waiting on the socket and records the answers to
 * the current roll call. */
static void serve(void)
{
    msg m;
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    while (recvfrom(W.fd, &m, sizeof m, MSG_DONTWAIT,
                    (struct sockaddr *)&from, &len) == (ssize_t)sizeof m) {
        len = sizeof from;
        if (m.token != W.token || m.rank < 0 || m.rank >= W.size)
            continue;
        if (m.kind == 1) {
            msg a = {.token = W.token, .kind = 2, .rank = W.rank,
                     .id = m.id, .seq = atomic_load(&W.seq),
                     .step = atomic_load(&W.step),
                     .idle_s = idle_s()};
            snprintf(a.op, sizeof a.op, "%s", current_op());
            sendto(W.fd, &a, sizeof a, MSG_DONTWAIT,
                   (struct sockaddr *)&from, sizeof from);
        } else if (m.kind == 2 && m.id == W.rollcall_id) {
            answer *an = &W.answers[m.rank];
            an->seen = 1;
            an->seq = m.seq;
            an->step = m.step;
            an->idle_s = m.idle_s;
            memcpy(an->op, m.op, OP_LEN);
            an->op[OP_LEN - 1] = '\0';
        }
    }
}

/* Asks every other rank where it is; waits up to ROLLCALL_S for them. */
static void roll_call(void)
{
    W.rollcall_id++;
    for (int r = 0; r < W.size; r++) /* the last roll call's marks */
        W.answers[r] = (answer){.seq = W.answers[r].seen ? W.answers[r].seq
                                                         : UINT64_MAX};
    memcpy(W.before, W.answers, (size_t)W.size * sizeof *W.answers);
    memset(W.answers, 0, (size_t)W.size * sizeof *W.answers);
    msg q = {.token = W.token, .kind = 1, .rank = W.rank,
             .id = W.rollcall_id};
    for (int r = 0; r < W.size; r++)
        if (r != W.rank)
            send_to(r, &q);
    int64_t end = now_ns() + (int64_t)(ROLLCALL_S * 1e9);
    for (;;) {
        int missing = 0;
        for (int r = 0; r < W.size; r++)
            missing += r != W.rank && !W.answers[r].seen;
        int64_t left = end - now_ns();
        if (!missing || left <= 0)
            return;
        struct pollfd p = {.fd = W.fd, .events = POLLIN};
        poll(&p, 1, (int)(left / 1000000) + 1);
        serve();
    }
}

static void append(char *buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t *len, const char *fmt, ...)
{
    if (*len >= REPORT_LEN - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, REPORT_LEN - *len, fmt, ap);
    va_end(ap);
    *len += n > 0 ? (size_t)n : 0;
    if (*len > REPORT_LEN - 1)
        *len = REPORT_LEN - 1;
}

/* Whether rank r, which answered, is where this rank is: the same
 * operation at the same step (then it is waiting too). */
static int alongside(const answer *a, const char *op, uint64_t step)
{
    return a->step == step && !strcmp(a->op, op);
}

/* A wait for ranks that all answer and are all making progress elsewhere
 * (marked an operation within the deadline: rank 0 writing weights.h5
 * or running explain alone) is not a hang. Everything else is: a rank
 * that does not answer, one stuck longer than the deadline itself, or
 * every rank in this operation (collectives that do not match) at two
 * roll calls in a row without a mark in between: a collective that has
 * just completed everywhere looks the same for a moment. */
static int hung(const char *op, uint64_t step)
{
    int elsewhere = 0, moved = 0;
    for (int r = 0; r < W.size; r++) {
        const answer *a = &W.answers[r];
        if (r == W.rank)
            continue;
        if (!a->seen)
            return 1;
        moved += a->seq != W.before[r].seq;
        if (alongside(a, op, step))
            continue;
        elsewhere++;
        if (a->idle_s >= W.deadline_s)
            return 1;
    }
    return W.size == 1 || (!elsewhere && !moved);
}

/* The report: this rank's operation and step; the ranks that do not
 * answer (the likely culprits), then those elsewhere (ahead or behind),
 * with their operation, step and time there. Ranks alongside this one
 * are waiting too and go unnamed. */
static void report(char *buf, const char *op, uint64_t step, double idle)
{
    size_t len = 0;
    int silent = 0, elsewhere = 0;
    append(buf, &len, "rank %d: no progress for %.0f s (deadline_s = %g) "
                      "in %s at step %llu",
           W.rank, idle, W.deadline_s, op, (unsigned long long)step);
    for (int r = 0; r < W.size; r++)
        silent += r != W.rank && !W.answers[r].seen;
    for (int r = 0, k = 0; r < W.size; r++)
        if (r != W.rank && !W.answers[r].seen)
            append(buf, &len, "%s%d", k++ ? ", " : silent > 1 ?
                   "; no answer from ranks " : "; no answer from rank ", r);
    if (silent)
        append(buf, &len, " (stopped, hung or its node is gone)");
    for (int r = 0; r < W.size; r++) {
        const answer *a = &W.answers[r];
        if (r == W.rank || !a->seen || alongside(a, op, step))
            continue;
        append(buf, &len, "%srank %d in %s at step %llu for %.0f s",
               elsewhere++ ? ", " : "; elsewhere: ", r, a->op,
               (unsigned long long)a->step, a->idle_s);
    }
    if (!silent && !elsewhere && W.size > 1)
        append(buf, &len, "; every rank is in this operation (mismatched "
                          "collectives: a bug, please report it)");
}

/* When the current operation has outlived the deadline: the roll call,
 * then the report, unless the main thread moved on meanwhile. */
static int check(void)
{
    uint64_t seq = atomic_load_explicit(&W.seq, memory_order_acquire);
    double idle = idle_s();
    if (idle < W.deadline_s || now_ns() < W.next_rollcall_ns)
        return 0;
    const char *op = current_op();
    uint64_t step = atomic_load(&W.step);
    roll_call();
    if (atomic_load(&W.seq) != seq)
        return 0; /* it finished while we asked */
    if (!hung(op, step)) {
        /* Ask again later, not at every wake-up. */
        double wait = W.deadline_s < 5.0 ? W.deadline_s : 5.0;
        W.next_rollcall_ns = now_ns() + (int64_t)(wait * 1e9);
        return 0;
    }
    char *buf = malloc(REPORT_LEN);
    if (!buf)
        return 0;
    report(buf, op, step, idle);
    W.fn(buf, W.user);
    free(buf);
    /* The other ranks pass the deadline about now too: answer their roll
     * calls, so that they name this rank's operation, not its silence. */
    for (int64_t end = now_ns() + (int64_t)(LINGER_S * 1e9);
         now_ns() < end;) {
        struct pollfd p = {.fd = W.fd, .events = POLLIN};
        poll(&p, 1, POLL_MS);
        serve();
    }
    W.fn(NULL, W.user);
    return 1;
}

static void *watch(void *arg)
{
    int64_t last = now_ns();
    while (!atomic_load(&W.quit)) {
        struct pollfd p = {.fd = W.fd, .events = POLLIN};
        poll(&p, 1, POLL_MS);
        serve();
        /* Seconds between wake-ups: this process was stopped (kill -STOP,
         * then SIGCONT as mpirun ends the job). Its own wait says nothing
         * about the others then: give them a whole deadline again. */
        int64_t now = now_ns();
        if (now - last > (int64_t)POLL_MS * 10 * 1000000)
            W.next_rollcall_ns = now + (int64_t)(W.deadline_s * 1e9);
        last = now;
        if (check())
            break;
    }
    return NULL;
}

/* This host's IPv4 addresses, loopback last (peers on other nodes try
 * the others first; on one node loopback always works). */
static void local_addrs(peer_addr *me)
{
    struct ifaddrs *ifs = NULL, *i;
    uint32_t loop = htonl(INADDR_LOOPBACK);
    me->n_ip = 0;
    if (getifaddrs(&ifs) == 0)
        for (i = ifs; i && me->n_ip < MAX_ADDRS - 1; i = i->ifa_next)
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
                (i->ifa_flags & IFF_UP) && !(i->ifa_flags & IFF_LOOPBACK))
                me->ip[me->n_ip++] =
                    ((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
    freeifaddrs(ifs);
    me->ip[me->n_ip++] = loop;
}

static int open_socket(peer_addr *me, char *err)
{
    W.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t len = sizeof a;
    if (W.fd < 0 || bind(W.fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(W.fd, (struct sockaddr *)&a, &len)) {
        mt_seterr(err, "watchdog: cannot open a UDP socket: %m");
        return MT_EIO;
    }
    me->port = a.sin_port;
    local_addrs(me);
    return MT_OK;
}

int mt_watchdog_start(MPI_Comm comm, double deadline_s, mt_watchdog_fn fn,
                      void *user, char *err)
{
    if (deadline_s <= 0.0 || W.running)
        return MT_OK;
    MPI_Comm_rank(comm, &W.rank);
    MPI_Comm_size(comm, &W.size);
    W.deadline_s = deadline_s;
    W.fn = fn;
    W.user = user;
    W.peers = mt_calloc((size_t)W.size, sizeof *W.peers);
    W.answers = mt_calloc((size_t)W.size, sizeof *W.answers);
    W.before = mt_calloc((size_t)W.size, sizeof *W.before);
    peer_addr me = {0};
    int rc = W.peers && W.answers && W.before ? open_socket(&me, err)
                                              : MT_ENOMEM;
    if (rc == MT_ENOMEM)
        mt_seterr(err, "watchdog: out of memory for %d ranks", W.size);
    if ((rc = mt_dist_agree(comm, rc, err)))
        goto fail;
    /* One job token, so that another job's datagrams are ignored. */
    W.token = ((uint64_t)getpid() << 32) ^ (uint64_t)now_ns();
    if (MPI_Bcast(&W.token, 1, MPI_UINT64_T, 0, comm) != MPI_SUCCESS ||
        MPI_Allgather(&me, sizeof me, MPI_BYTE, W.peers, sizeof me, MPI_BYTE,
                      comm) != MPI_SUCCESS) {
        mt_seterr(err, "watchdog: address exchange failed");
        rc = MT_EIO;
        goto fail;
    }
    atomic_store(&W.quit, 0);
    mt_watch("start-up");
    rc = pthread_create(&W.thread, NULL, watch, NULL) ? MT_EIO : MT_OK;
    if (rc)
        mt_seterr(err, "watchdog: cannot start its thread");
    else
        W.running = 1;
    if ((rc = mt_dist_agree(comm, rc, err)))
        goto fail;
    return MT_OK;
fail:
    mt_watchdog_stop();
    return rc;
}

void mt_watchdog_stop(void)
{
    if (W.running) {
        atomic_store(&W.quit, 1);
        pthread_join(W.thread, NULL);
        W.running = 0;
    }
    if (W.fd >= 0)
        close(W.fd);
    W.fd = -1;
    mt_free(W.peers);
    mt_free(W.answers);
    mt_free(W.before);
    W.rollcall_id = 0;
    W.next_rollcall_ns = 0;
}
