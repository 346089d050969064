#include "mpitrain/io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpitrain/config.h"
#include "mpitrain/core.h"

int mt_metrics_open(mt_metrics_log *log, const char *path, char *err)
{
    log->fp = fopen(path, "w");
    if (!log->fp) {
        mt_seterr(err, "metrics log %s: %s", path, strerror(errno));
        return MT_EIO;
    }
    return MT_OK;
}

/* JSON has no NaN or Infinity: write null for them. */
static void num(FILE *fp, const char *key, double v, int last)
{
    if (isfinite(v))
        fprintf(fp, "\"%s\":%.9g%s", key, v, last ? "" : ",");
    else
        fprintf(fp, "\"%s\":null%s", key, last ? "" : ",");
}

void mt_json_append(char *buf, size_t len, const char *key, double v)
{
    size_t used = strlen(buf);
    if (used >= len)
        return;
    if (isfinite(v))
        snprintf(buf + used, len - used, ",\"%s\":%.9g", key, v);
    else
        snprintf(buf + used, len - used, ",\"%s\":null", key);
}

void mt_metrics_write(mt_metrics_log *log, const char *split, size_t epoch,
                      size_t step, double loss, double accuracy,
                      double samples_per_s, double lr, double wall_s,
                      const char *extra)
{
    if (!log->fp)
        return;
    fprintf(log->fp, "{\"epoch\":%zu,\"step\":%zu,\"split\":\"%s\",", epoch,
            step, split);
    num(log->fp, "loss", loss, 0);
    num(log->fp, "accuracy", accuracy >= 0 ? accuracy : NAN, 0);
    num(log->fp, "samples_per_s", samples_per_s, 0);
    num(log->fp, "lr", lr, 0);
    num(log->fp, "wall_s", wall_s, 1);
    fprintf(log->fp, "%s}\n", extra ? extra : "");
    fflush(log->fp);
}

void mt_metrics_flush(mt_metrics_log *log)
{
    if (log->fp)
        fflush(log->fp);
}

void mt_metrics_close(mt_metrics_log *log)
{
    if (log->fp)
        fclose(log->fp);
    log->fp = NULL;
}

/* Whether what rank 0 prints ends on a terminal. isatty alone is not
 * enough: Open MPI hands every rank a pseudo-terminal even when mpirun's
 * own output goes to a batch log, so under mpirun we ask about mpirun's
 * output instead (on one node the rank's parent; elsewhere rank 0 runs
 * where mpirun does only by convention, and its parent is a daemon whose
 * output is not a terminal, which errs towards plain lines). Under srun
 * only `srun --pty` gives a terminal. */
static int ends_on_terminal(FILE *fp)
{
    if (!isatty(fileno(fp)))
        return 0;
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/1", (int)getppid());
        /* O_NONBLOCK: a pipe or FIFO there must not make us wait. */
        int fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK);
        int tty = fd >= 0 && isatty(fd);
        if (fd >= 0)
            close(fd);
        return tty;
    }
    if (getenv("SLURM_STEP_ID"))
        return getenv("SLURM_PTY_PORT") != NULL;
    return 1;
}

void mt_progress_init(mt_progress_out *p, FILE *fp, int mode)
{
    p->fp = fp;
    p->drawn = 0;
    if (mode == MT_PROGRESS_AUTO)
        p->bar = ends_on_terminal(fp);
    else
        p->bar = mode == MT_PROGRESS_BAR;
    if (mode == MT_PROGRESS_NONE)
        p->fp = NULL;
}

/* " eta 1h02m", " eta 3m12s", " eta 45s", or "" when unknown. */
static void format_eta(double s, char *buf, size_t len)
{
    buf[0] = '\0';
    if (!(s >= 0.0) || s > 1e8)
        return;
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, len, " eta %luh%02lum", t / 3600, t % 3600 / 60);
    else if (t >= 60)
        snprintf(buf, len, " eta %lum%02lus", t / 60, t % 60);
    else
        snprintf(buf, len, " eta %lus", t);
}

void mt_progress_step(mt_progress_out *p, size_t epoch, size_t epochs,
                      size_t step, size_t steps, double loss, double acc,
                      double samples_per_s, double eta_s)
{
    if (!p->fp)
        return;
    char accs[32] = "", eta[32];
    if (acc >= 0)
        snprintf(accs, sizeof accs, " acc %.4f", acc);
    format_eta(eta_s, eta, sizeof eta);
    if (p->bar) {
        enum { W = 30 };
        size_t fill = steps ? step * W / steps : W;
        char bar[W + 1];
        for (size_t i = 0; i < W; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[W] = '\0';
        fprintf(p->fp, "\repoch %zu/%zu [%s] %zu/%zu loss %.4f%s %.0f/s%s ",
                epoch, epochs, bar, step, steps, loss, accs, samples_per_s,
                eta);
        p->drawn = 1;
    } else {
        fprintf(p->fp, "epoch %zu/%zu step %zu/%zu loss %.4f%s %.0f "
                       "samples/s%s\n",
                epoch, epochs, step, steps, loss, accs, samples_per_s, eta);
    }
    fflush(p->fp);
}

void mt_progress_end(mt_progress_out *p)
{
    if (p->fp && p->bar && p->drawn)
        fputc('\n', p->fp);
    p->drawn = 0;
}
