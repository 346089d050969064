/* mpitrain watchdog: a deadline on every wait ([run] deadline_s).
 *
 * The main thread marks each operation it enters (mt_watch: a collective,
 * a data fetch, a checkpoint, a training step's computation). A watchdog
 * thread wakes a few times a second; when one operation has lasted longer
 * than the deadline it asks every other rank where it is (a roll call
 * over UDP, answered by their watchdog threads, so that it works whatever
 * MPI is doing). If a rank does not answer, or is itself stuck longer
 * than the deadline, or every rank waits in this same operation, it hands
 * one line to the caller's function, which ends the process (src/cli:
 * exit status 4). The line names this rank, the operation and step, and
 * the ranks that have not arrived: those that do not answer (stopped,
 * hung hard, or their node is gone) and those busy elsewhere, with their
 * operation and step. Waiting for ranks that all answer and all made
 * progress within the deadline (rank 0 writing a file alone) goes on.
 *
 * The thread never calls MPI, so the library needs no more than
 * MPI_THREAD_FUNNELED. One watchdog per process: marks come from deep in
 * the library, where no handle is at hand. Cost per mark: two atomic
 * stores and a clock read (CLOCK_MONOTONIC, no system call). */
#ifndef MPITRAIN_WATCHDOG_H
#define MPITRAIN_WATCHDOG_H

#include <mpi.h>
#include <stdint.h>

/* Called from the watchdog thread with the report when the deadline has
 * passed (to print it); the watchdog then goes on answering the other
 * ranks' roll calls for a few seconds and calls it again with NULL: time
 * to end the process. If that call returns, the watchdog stops. */
typedef void (*mt_watchdog_fn)(const char *report, void *user);

/* Starts the watchdog on every rank of comm: opens this rank's UDP socket
 * and exchanges the addresses (an MPI_Allgather; collective). deadline_s
 * <= 0 starts nothing and returns MT_OK. MT_EIO (err says why) when the
 * socket or thread cannot be had; then no rank has started one (the
 * ranks agree). */
int mt_watchdog_start(MPI_Comm comm, double deadline_s, mt_watchdog_fn fn,
                      void *user, char *err);
/* Stops the thread and closes the socket (local; safe if never started). */
void mt_watchdog_stop(void);

/* This rank enters operation `op` (a string literal: only the pointer is
 * kept); the deadline counts from now. Cheap; callable without a
 * watchdog. */
void mt_watch(const char *op);
/* The training step this rank is at, for reports. */
void mt_watch_step(uint64_t step);

#endif
