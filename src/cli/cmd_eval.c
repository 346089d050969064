/* eval and predict: load the configured model and its weights. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"
#include "mpitrain/plan.h"
#include "mpitrain/data.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/metrics.h"
#include "mpitrain/train.h"

static const char eval_usage[] =
    "usage: mpitrain eval CONFIG --weights FILE[,FILE...] [--data FILE]\n"
    "                     [--json] [--set section.key=value]...\n"
    "\n"
    "Evaluates the weights on [data] test (or --data FILE) and prints the\n"
    "loss and accuracy; --json prints one JSON object instead. Several\n"
    "files, or --weights @LIST (one file a line, as a search's\n"
    "ensemble.txt), are an ensemble: their probabilities are averaged.\n";

static const char predict_usage[] =
    "usage: mpitrain predict CONFIG --weights FILE --input FILE\n"
    "                        [--output FILE.csv] [--set section.key=value]...\n"
    "\n"
    "Writes one CSV row per sample of --input (an HDF5 file with /x):\n"
    "index, predicted class, then the model's outputs (probabilities for\n"
    "softmax_ce and sigmoid_bce). Default output is standard output.\n"
    "Under mpirun each rank predicts its share of the rows; rank 0 writes\n"
    "them in file order.\n";

#define MAX_MEMBERS 64

typedef struct session {
    mt_config cfg;
    mt_dataset data;
    mt_model models[MAX_MEMBERS]; /* one, or an ensemble's members */
    size_t n_models;
    char *paths[MAX_MEMBERS];
    char *list; /* the text the paths point into */
    int rank;
    char err[MT_ERR_LEN];
} session;

static void session_free(session *s)
{
    for (size_t i = 0; i < s->n_models; i++)
        mt_model_free(&s->models[i]);
    free(s->list);
    mt_dataset_free(&s->data);
    mt_config_free(&s->cfg);
}

/* Parses the options of eval, predict and explain, which all need
 * --weights (predict also --input). Returns 1 to go on, or 0 when the
 * command is done with exit status *st (after --help or a usage error);
 * a is freed then. */
static int parse_args(int argc, char **argv, const char *usage,
                      const char *allowed, int need_input, mt_cli_args *a,
                      int *st)
{
    *st = mt_cli_parse(argc, argv, usage, allowed, a);
    if (*st == 0 && (!a->weights || (need_input && !a->input))) {
        fprintf(stderr, "mpitrain %s: --weights FILE%s required\n", argv[0],
                need_input ? " and --input FILE are" : " is");
        *st = MT_EXIT_USAGE;
    }
    if (*st == 0)
        return 1;
    mt_cli_args_free(a);
    *st = *st < 0 ? MT_EXIT_OK : *st;
    return 0;
}

/* --weights: one file, FILE,FILE,..., or @LIST (one file a line, blank
 * lines skipped) into s->paths and s->n_models. */
static int weight_paths(session *s, const char *arg, int many)
{
    if (arg[0] == '@') {
        FILE *f = fopen(arg + 1, "r");
        size_t len = 0;
        if (!f || getdelim(&s->list, &len, '\0', f) < 0) {
            mt_seterr(s->err, "--weights %s: cannot read the list", arg);
            if (f)
                fclose(f);
            return MT_EIO;
        }
        fclose(f);
    } else if (!(s->list = strdup(arg))) {
        return MT_ENOMEM;
    }
    const char *seps = arg[0] == '@' ? "\n" : ",";
    char *save = NULL;
    for (char *p = strtok_r(s->list, seps, &save); p;
         p = strtok_r(NULL, seps, &save)) {
        if (s->n_models == MAX_MEMBERS) {
            mt_seterr(s->err, "--weights: more than %d files", MAX_MEMBERS);
            return MT_EINVAL;
        }
        s->paths[s->n_models++] = p;
    }
    if (s->n_models == 0 || (s->n_models > 1 && !many)) {
        mt_seterr(s->err, "--weights %s: %s", arg,
                  s->n_models ? "an ensemble is for eval only"
                              : "no weights file");
        return MT_EINVAL;
    }
    return MT_OK;
}

/* Config, data file (`data`, or [data] test when NULL) and weights; every
 * rank does the same and agrees. With `share` each rank reads only its
 * share of the rows (eval, predict); otherwise the whole file (explain,
 * which runs on rank 0). */
static int open_session(session *s, const mt_cli_args *a, const char *data,
                        int need_y, int share)
{
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    memset(s, 0, sizeof *s);
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    int rc = mt_config_load(&s->cfg, a->config, a->sets, a->n_sets, s->err);
    if (rc == MT_OK && !data && !s->cfg.test[0]) {
        mt_seterr(s->err, "%s: no [data] test set; pass --data FILE",
                  a->config);
        rc = MT_EINVAL;
    }
    if (rc == MT_OK && share)
        rc = mt_dataset_load_share(&s->data, data ? data : s->cfg.test,
                                   s->rank, size, 0, s->err);
    else if (rc == MT_OK)
        rc = mt_dataset_load(&s->data, data ? data : s->cfg.test, s->err);
    size_t n = 0, want = 0;
    if (rc == MT_OK) /* eval (need_y && share) alone takes an ensemble */
        rc = weight_paths(s, a->weights, need_y && share);
    want = rc == MT_OK ? s->n_models : 0;
    for (; rc == MT_OK && n < want; n += rc == MT_OK)
        rc = mt_model_from_config(&s->cfg, s->data.shape, s->cfg.batch,
                                  &s->models[n], s->err);
    s->n_models = n; /* the models built, to free */
    if (rc == MT_OK)
        rc = mt_dataset_check(&s->data, s->models[0].in,
                              mt_shape_size(mt_model_out(&s->models[0])),
                              (mt_loss_kind)s->cfg.loss, need_y, s->err);
    for (size_t i = 0; rc == MT_OK && i < s->n_models; i++)
        rc = mt_weights_load(&s->models[i], s->paths[i], s->err);
    rc = mt_dist_agree(MPI_COMM_WORLD, rc, s->err);
    return rc ? rc : mt_cli_watchdog(s->cfg.deadline_s, s->err);
}

/* JSON number, or null for NaN and Inf (which JSON does not have). */
static void jnum(const char *key, double v, const char *tail)
{
    if (isfinite(v))
        printf("\"%s\":%.9g%s", key, v, tail);
    else
        printf("\"%s\":null%s", key, tail);
}

static const char *class_name(const session *s, size_t k, char *buf,
                              size_t len)
{
    if (s->data.class_names && k < s->data.n_classes)
        return s->data.class_names[k];
    snprintf(buf, len, "%zu", k);
    return buf;
}

static void print_json(const session *s, const mt_cli_args *a,
                       const mt_eval_detail *d, const mt_report *rep)
{
    const mt_eval_result *r = &d->basic;
    printf("{\"data\":\"%s\",\"weights\":\"%s\",\"samples\":%zu,",
           s->data.path, a->weights, r->n);
    jnum("loss", r->loss, ",");
    jnum("accuracy", r->accuracy >= 0 ? r->accuracy : NAN, ",");
    jnum("error_rate", r->accuracy >= 0 ? 1.0 - r->accuracy : NAN, ",");
    jnum("perplexity", d->perplexity, ",");
    jnum("roc_auc", d->auc, ",");
    printf("\"roc_auc_undefined_classes\":%zu,", d->auc_undefined);
    jnum("top5_accuracy", d->top5, ",");
    jnum("mse", d->mse, ",");
    jnum("mae", d->mae, ",");
    jnum("r2", d->r2, "");
    if (rep->cls) {
        const mt_averages *av[3] = {&rep->macro, &rep->micro, &rep->weighted};
        const char *names[3] = {"macro", "micro", "weighted"};
        for (int i = 0; i < 3; i++) {
            printf(",\"%s\":{", names[i]);
            jnum("precision", av[i]->precision, ",");
            jnum("recall", av[i]->recall, ",");
            jnum("f1", av[i]->f1, "}");
        }
        printf(",\"per_class\":[");
        for (size_t k = 0; k < d->K; k++) {
            char buf[32];
            printf("%s{\"class\":\"%s\",", k ? "," : "",
                   class_name(s, k, buf, sizeof buf));
            jnum("precision", rep->cls[k].precision, ",");
            jnum("recall", rep->cls[k].recall, ",");
            jnum("f1", rep->cls[k].f1, ",");
            printf("\"support\":%llu}",
                   (unsigned long long)rep->cls[k].support);
        }
        printf("],\"confusion_matrix\":[");
        for (size_t t = 0; t < d->K; t++) {
            printf("%s[", t ? "," : "");
            for (size_t p = 0; p < d->K; p++)
                printf("%s%llu", p ? "," : "",
                       (unsigned long long)d->cm[t * d->K + p]);
            printf("]");
        }
        printf("]");
    }
    printf("}\n");
}

static void print_text(const session *s, const mt_eval_detail *d,
                       const mt_report *rep)
{
    const mt_eval_result *r = &d->basic;
    printf("%s: %zu samples  loss %.4f", s->data.path, r->n, r->loss);
    if (r->accuracy >= 0)
        printf("  accuracy %.4f", r->accuracy);
    if (isfinite(d->perplexity))
        printf("  perplexity %.4f", d->perplexity);
    if (isfinite(d->mse))
        printf("  MSE %.6g  MAE %.6g  R2 %.6g", d->mse, d->mae, d->r2);
    printf("\n");
    if (!rep->cls)
        return;
    printf("macro P/R/F1 %.4f %.4f %.4f  weighted %.4f %.4f %.4f\n",
           rep->macro.precision, rep->macro.recall, rep->macro.f1,
           rep->weighted.precision, rep->weighted.recall, rep->weighted.f1);
    if (isfinite(d->auc))
        printf("ROC AUC %.4f%s", d->auc, d->K > 2 ? " (one-vs-rest macro)" : "");
    else
        printf("ROC AUC undefined (a class without positives or negatives)");
    if (d->auc_undefined && isfinite(d->auc))
        printf(", %zu class(es) left out: undefined", d->auc_undefined);
    if (isfinite(d->top5))
        printf("  top-5 accuracy %.4f", d->top5);
    printf("\n\n%-14s %9s %9s %9s %9s\n", "class", "precision", "recall",
           "f1", "support");
    char buf[32];
    for (size_t k = 0; k < d->K; k++)
        printf("%-14.14s %9.4f %9.4f %9.4f %9llu\n",
               class_name(s, k, buf, sizeof buf), rep->cls[k].precision,
               rep->cls[k].recall, rep->cls[k].f1,
               (unsigned long long)rep->cls[k].support);
    printf("\nconfusion matrix (rows: label, columns: prediction)\n%14s", "");
    for (size_t p = 0; p < d->K; p++)
        printf(" %6zu", p);
    printf("\n");
    for (size_t t = 0; t < d->K; t++) {
        printf("%-14.14s", class_name(s, t, buf, sizeof buf));
        for (size_t p = 0; p < d->K; p++)
            printf(" %6llu", (unsigned long long)d->cm[t * d->K + p]);
        printf("\n");
    }
}

static void print_eval(const session *s, const mt_cli_args *a,
                       const mt_eval_detail *d)
{
    mt_report rep = {0};
    if (d->basic.accuracy >= 0 && d->cm)
        mt_report_from_confusion(d->cm, d->K, &rep);
    if (a->json)
        print_json(s, a, d, &rep);
    else
        print_text(s, d, &rep);
    mt_report_free(&rep);
}

int mt_cli_eval(int argc, char **argv)
{
    mt_cli_args a;
    int st;
    if (!parse_args(argc, argv, eval_usage, "weights,json,data", 0, &a, &st))
        return st;
    session s;
    int rc = open_session(&s, &a, a.data, 1, 1);
    mt_eval_detail d = {0};
    if (rc == MT_OK)
        rc = mt_evaluate_ensemble(s.models, s.n_models, &s.data,
                                  MPI_COMM_WORLD, (mt_loss_kind)s.cfg.loss,
                                  &d, s.err);
    if (rc == MT_ENUMERIC) { /* name the file and the weights */
        char msg[MT_ERR_LEN];
        snprintf(msg, sizeof msg, "%s", s.err);
        mt_seterr(s.err, "%s with %s: %s", s.data.path, a.weights, msg);
    }
    if (rc == MT_OK && s.rank == 0)
        print_eval(&s, &a, &d);
    mt_eval_detail_free(&d);
    int exit_st = rc ? mt_cli_fail(s.rank, rc, s.err) : MT_EXIT_OK;
    session_free(&s);
    mt_cli_args_free(&a);
    return exit_st;
}

/* Probabilities where the loss defines them, raw outputs otherwise. */
static void write_rows(const session *s, FILE *out, size_t i0,
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
    const session *s;
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
static int predict_share(session *s, char **text, size_t *len)
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
    int rc = mt_forward_chunks(s->models, NULL, &s->data, predict_chunk, &c,
                               s->err);
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
static int predict_all(session *s, const char *output)
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
    if (!parse_args(argc, argv, predict_usage, "weights,input,output", 1,
                    &a, &st))
        return st;
    session s;
    int rc = open_session(&s, &a, a.input, 0, 1);
    if (rc == MT_OK)
        rc = mt_dist_agree(MPI_COMM_WORLD, predict_all(&s, a.output), s.err);
    int exit_st = rc ? mt_cli_fail(s.rank, rc, s.err) : MT_EXIT_OK;
    session_free(&s);
    mt_cli_args_free(&a);
    return exit_st;
}

static const char explain_usage[] =
    "usage: mpitrain explain CONFIG --weights FILE [--data FILE]\n"
    "                        [--samples N] [--group G] [--output DIR]\n"
    "\n"
    "Permutation importance: for each group of input features (G x G pixel\n"
    "blocks of an image, default 4; runs of G features of a flat input,\n"
    "default 1), the accuracy lost when the group is shuffled across the\n"
    "first N samples (default 2000) of [data] test or --data. Writes\n"
    "DIR/importance.csv and, for images, a heat map DIR/importance.svg\n"
    "(gnuplot); DIR defaults to [run] dir. Computed by rank 0.\n";

/* CSV of the importances and, for images, a gnuplot heat map. */
static int write_importance(const char *dir, const double *imp, size_t rows,
                            size_t cols, int image, char *err)
{
    char csv[4096], svg[4096];
    snprintf(csv, sizeof csv, "%s/importance.csv", dir);
    snprintf(svg, sizeof svg, "%s/importance.svg", dir);
    FILE *f = fopen(csv, "w");
    if (!f) {
        mt_seterr(err, "%s: cannot write", csv);
        return MT_EIO;
    }
    fprintf(f, "group,row,col,accuracy_drop\n");
    for (size_t i = 0; i < rows * cols; i++)
        fprintf(f, "%zu,%zu,%zu,%.6f\n", i, i / cols, i % cols, imp[i]);
    fclose(f);
    printf("wrote %s\n", csv);
    if (!image)
        return MT_OK;
    FILE *gp = popen("gnuplot 2>/dev/null", "w");
    if (!gp)
        return MT_OK;
    fprintf(gp, "set terminal svg size 520,480\nset output '%s'\n"
                "set title 'accuracy drop when a block is shuffled'\n"
                "set yrange [] reverse\nset size ratio -1\n"
                "set palette defined (0 'white', 1 'red')\n"
                "plot '-' matrix with image notitle\n",
            svg);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++)
            fprintf(gp, "%g ", imp[r * cols + c]);
        fputc('\n', gp);
    }
    fprintf(gp, "e\n");
    if (pclose(gp) == 0)
        printf("wrote %s\n", svg);
    return MT_OK;
}

/* The k groups that cost the most accuracy, largest first. */
static void print_top(const double *imp, size_t n, size_t cols, size_t k)
{
    uint8_t *shown = mt_calloc(n, 1);
    for (size_t top = 0; shown && top < k && top < n; top++) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!shown[i] && (best == n || imp[i] > imp[best]))
                best = i;
        shown[best] = 1;
        printf("  group %zu (row %zu, col %zu): accuracy -%.4f\n", best,
               best / cols, best % cols, imp[best]);
    }
    free(shown);
}

int mt_cli_explain(int argc, char **argv)
{
    mt_cli_args a;
    int st;
    if (!parse_args(argc, argv, explain_usage,
                    "weights,data,output,samples,group", 0, &a, &st))
        return st;
    session s;
    int rc = open_session(&s, &a, a.data, 0, 0);
    if (rc == MT_OK && s.rank == 0) {
        int image = s.data.shape.h > 1 || s.data.shape.w > 1;
        size_t g = a.group ? a.group : image ? 4 : 1, rows, cols, ng;
        double *imp = NULL, base = 0.0;
        const char *dir = a.output ? a.output : s.cfg.dir;
        rc = mt_permutation_importance(s.models, &s.data,
                                       a.samples ? a.samples : 2000, g,
                                       s.cfg.seed, &imp, &ng, &rows, &cols,
                                       &base, s.err);
        if (rc == MT_OK)
            rc = mt_mkdirs(dir, s.err);
        if (rc == MT_OK) {
            printf("baseline accuracy %.4f; most important groups:\n",
                   base);
            print_top(imp, ng, cols, 5);
            rc = write_importance(dir, imp, rows, cols, image, s.err);
        }
        free(imp);
    }
    rc = mt_dist_agree(MPI_COMM_WORLD, rc, s.err);
    int exit_st = rc ? mt_cli_fail(s.rank, rc, s.err) : MT_EXIT_OK;
    session_free(&s);
    mt_cli_args_free(&a);
    return exit_st;
}
