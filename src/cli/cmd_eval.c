/* eval: the loss, accuracy and the detailed metrics of weights on a
 * data file. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mpitrain/config.h"
#include "mpitrain/core.h"
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

/* JSON number, or null for NaN and Inf (which JSON does not have). */
static void jnum(const char *key, double v, const char *tail)
{
    if (isfinite(v))
        printf("\"%s\":%.9g%s", key, v, tail);
    else
        printf("\"%s\":null%s", key, tail);
}

static const char *class_name(const mt_cli_session *s, size_t k, char *buf,
                              size_t len)
{
    if (s->data.class_names && k < s->data.n_classes)
        return s->data.class_names[k];
    snprintf(buf, len, "%zu", k);
    return buf;
}

static void print_json(const mt_cli_session *s, const mt_cli_args *a,
                       const mt_eval_detail *d, const mt_report *rep)
{
    const mt_eval_result *r = &d->basic;
    printf("{\"data\":\"%s\",\"weights\":\"%s\",\"samples\":%zu,"
           "\"stages\":%d,",
           s->data.path, a->weights, r->n, s->staged ? s->plan.stages : 1);
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

static void print_text(const mt_cli_session *s, const mt_eval_detail *d,
                       const mt_report *rep)
{
    const mt_eval_result *r = &d->basic;
    if (s->staged)
        printf("through %d pipeline stages x %d replica%s\n",
               s->plan.stages, s->plan.dp_size,
               s->plan.dp_size == 1 ? "" : "s");
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

static void print_eval(const mt_cli_session *s, const mt_cli_args *a,
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
    if (!mt_cli_session_args(argc, argv, eval_usage, "weights,json,data", 0,
                             &a, &st))
        return st;
    mt_cli_session s;
    int rc = mt_cli_session_open(&s, &a, a.data, 1, 1);
    mt_eval_detail d = {0};
    if (rc == MT_OK)
        rc = mt_evaluate_ensemble(s.models, mt_cli_session_pipes(&s),
                                  s.n_models, &s.data, MPI_COMM_WORLD,
                                  (mt_loss_kind)s.cfg.loss, &d, s.err);
    if (rc == MT_ENUMERIC) { /* name the file and the weights */
        char msg[MT_ERR_LEN];
        snprintf(msg, sizeof msg, "%s", s.err);
        mt_seterr(s.err, "%s with %s: %s", s.data.path, a.weights, msg);
    }
    if (rc == MT_OK && s.rank == 0)
        print_eval(&s, &a, &d);
    mt_eval_detail_free(&d);
    int exit_st = rc ? mt_cli_fail(s.rank, rc, s.err) : MT_EXIT_OK;
    mt_cli_session_free(&s);
    mt_cli_args_free(&a);
    return exit_st;
}

