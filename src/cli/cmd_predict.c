/* predict: a CSV row of outputs for every sample of an input file. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/train.h"

static const char predict_usage[] =
    "usage: mpitrain predict CONFIG --weights FILE --input FILE\n"
    "                        [--output FILE.csv] [--set section.key=value]...\n"
    "\n"
    "Writes one CSV row per sample of --input (an HDF5 file with /x):\n"
    "index, predicted class, then the model's outputs (probabilities for\n"
    "softmax_ce and sigmoid_bce). Default output is standard output.\n"
    "Under mpirun each rank predicts its share of the rows (with [parallel]\n"
    "stages, each replica through its stages); rank 0 writes them in file\n"
    "order.\n";

/* Probabilities where the loss defines them, raw outputs otherwise. */
static void write_rows(const mt_cli_session *s, FILE *out, size_t i0,
                       const float *y, size_t B, size_t K)
{
    for (size_t n = 0; n < B; n++) {
        const float *v = y + n * K;
        size_t best = 0;
        double zmax = v[0], sum = 0.0;
        for (size_t k = 1; k < K; k++)
            if (v[k] > v[best])
                best = k;
        zmax = v[best];
        for (size_t k = 0; k < K; k++)
            sum += exp((double)v[k] - zmax);
        long cls = K > 1 ? (long)best : (v[0] > 0.0f);
        fprintf(out, "%zu,%ld", i0 + n, cls);
        for (size_t k = 0; k < K; k++) {
            double p = v[k];
            if (s->cfg.loss == MT_LOSS_SOFTMAX_CE)
                p = exp((double)v[k] - zmax) / sum;
            else if (s->cfg.loss == MT_LOSS_SIGMOID_BCE)
                p = 1.0 / (1.0 + exp(-(double)v[k]));
            fprintf(out, ",%.6g", p);
        }
        fputc('\n', out);
    }
}

typedef struct predict_ctx {
    const mt_cli_session *s;
    FILE *out;
    size_t K;
} predict_ctx;

static void predict_chunk(void *user, const float *y, const int32_t *labels,
                          const float *targets, size_t b, size_t first)
{
    predict_ctx *c = user;
    /* Rows are numbered as in the file: this rank's share starts later. */
    write_rows(c->s, c->out, c->s->data.first + first, y, b, c->K);
}

/* This rank's rows as CSV text in *text (rank 0's with the header). */
static int predict_share(mt_cli_session *s, char **text, size_t *len)
{
    FILE *mem = open_memstream(text, len);
    if (!mem) {
        mt_seterr(s->err, "predict: out of memory");
        return MT_ENOMEM;
    }
    size_t K = mt_shape_size(mt_model_out(s->models));
    if (s->rank == 0) {
        fprintf(mem, "index,class");
        for (size_t k = 0; k < K; k++)
            fprintf(mem, ",out%zu", k);
        fputc('\n', mem);
    }
    predict_ctx c = {s, mem, K};
    int rc = mt_forward_chunks(s->models, mt_cli_session_pipes(s), &s->data,
                               predict_chunk, &c, s->err);
    if (fclose(mem) != 0 && rc == MT_OK) {
        mt_seterr(s->err, "predict: out of memory");
        rc = MT_ENOMEM;
    }
    return rc;
}

/* MPI counts are ints: long texts travel in pieces. */
#define PIECE ((size_t)1 << 30)

static void send_text(const char *text, size_t len)
{
    unsigned long long n = len;
    MPI_Send(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, MT_TAG_PREDICT,
             MPI_COMM_WORLD);
    for (size_t o = 0; o < len; o += PIECE)
        MPI_Send(text + o, (int)(len - o < PIECE ? len - o : PIECE),
                 MPI_CHAR, 0, MT_TAG_PREDICT, MPI_COMM_WORLD);
}

/* Rank 0 writes rank q's text; it receives it even when it cannot write
 * any more, so that no sender waits forever. */
static int relay_text(int q, FILE *out)
{
    unsigned long long n = 0;
    MPI_Recv(&n, 1, MPI_UNSIGNED_LONG_LONG, q, MT_TAG_PREDICT,
             MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    char *buf = malloc(n < PIECE ? (size_t)n + 1 : PIECE);
    int bad = !buf;
    for (size_t o = 0; o < n; o += PIECE) {
        size_t len = n - o < PIECE ? (size_t)(n - o) : PIECE;
        char sink[1];
        MPI_Recv(buf ? buf : sink, buf ? (int)len : 0, MPI_CHAR, q,
                 MT_TAG_PREDICT, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        bad |= !buf || !out || fwrite(buf, 1, len, out) != len;
    }
    free(buf);
    return bad;
}

/* Every rank predicts its share of the rows; rank 0 writes its own text
 * and then each rank's in rank order, which is file-row order, holding
 * one rank's text at a time. A file is written as NAME.partial and
 * renamed once complete. */
static int predict_all(mt_cli_session *s, const char *output)
{
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char *text = NULL, tmp[4096];
    size_t len = 0;
    FILE *out = NULL;
    int rc = predict_share(s, &text, &len);
    if (rc == MT_OK && s->rank == 0) {
        if (output)
            snprintf(tmp, sizeof tmp, "%s.partial", output);
        out = output ? fopen(tmp, "w") : stdout;
        if (!out) {
            mt_seterr(s->err, "%s: cannot write", tmp);
            rc = MT_EIO;
        }
    }
    /* Everyone holds its text and rank 0 its file, or all stop here. */
    if ((rc = mt_dist_agree(MPI_COMM_WORLD, rc, s->err))) {
        free(text);
        return rc;
    }
    if (s->rank != 0) {
        send_text(text, len);
        free(text);
        return MT_OK;
    }
    int bad = fwrite(text, 1, len, out) != len;
    free(text);
    for (int q = 1; q < size; q++)
        bad |= relay_text(q, out);
    bad |= ferror(out);
    if (output) {
        bad |= fclose(out) != 0;
        bad = bad || rename(tmp, output) != 0;
        if (bad)
            unlink(tmp);
    }
    if (bad) {
        mt_seterr(s->err, "%s: write failed (disk full?)",
                  output ? output : "stdout");
        return MT_EIO;
    }
    return MT_OK;
}

int mt_cli_predict(int argc, char **argv)
{
    mt_cli_args a;
    int st;
    if (!mt_cli_session_args(argc, argv, predict_usage,
                             "weights,input,output", 1, &a, &st))
        return st;
    mt_cli_session s;
    int rc = mt_cli_session_open(&s, &a, a.input, 0, 1);
    if (rc == MT_OK)
        rc = mt_dist_agree(MPI_COMM_WORLD, predict_all(&s, a.output), s.err);
    int exit_st = rc ? mt_cli_fail(s.rank, rc, s.err) : MT_EXIT_OK;
    mt_cli_session_free(&s);
    mt_cli_args_free(&a);
    return exit_st;
}

