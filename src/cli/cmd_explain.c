/* explain: permutation importance of input feature groups. */
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
#include "mpitrain/train.h"

static const char explain_usage[] =
    "usage: mpitrain explain CONFIG --weights FILE [--data FILE]\n"
    "                        [--samples N] [--group G] [--output DIR]\n"
    "\n"
    "Permutation importance: for each group of input features (G x G pixel\n"
    "blocks of an image, default 4; runs of G features of a flat input,\n"
    "default 1), the accuracy lost when the group is shuffled across the\n"
    "first N samples (default 2000) of [data] test or --data. Writes\n"
    "DIR/importance.csv and, for images, a heat map DIR/importance.svg\n"
    "(gnuplot); DIR defaults to [run] dir. Computed by rank 0 (with\n"
    "[parallel] stages, by the first replica's stages).\n";

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
    if (!mt_cli_session_args(argc, argv, explain_usage,
                             "weights,data,output,samples,group", 0, &a,
                             &st))
        return st;
    mt_cli_session s;
    int rc = mt_cli_session_open(&s, &a, a.data, 0, 0);
    /* One process, or with stages the first replica's, computes; rank 0
     * (its stage 0) writes. */
    int computes = s.staged ? s.plan.replica == 0 : s.rank == 0;
    if (rc == MT_OK && computes) {
        int image = s.data.shape.h > 1 || s.data.shape.w > 1;
        size_t g = a.group ? a.group : image ? 4 : 1, rows, cols, ng;
        double *imp = NULL, base = 0.0;
        const char *dir = a.output ? a.output : s.cfg.dir;
        rc = mt_permutation_importance(s.models, mt_cli_session_pipes(&s),
                                       &s.data, a.samples ? a.samples : 2000,
                                       g, s.cfg.seed, &imp, &ng, &rows,
                                       &cols, &base, s.err);
        if (rc == MT_OK && s.rank == 0)
            rc = mt_mkdirs(dir, s.err);
        if (rc == MT_OK && s.rank == 0) {
            printf("baseline accuracy %.4f; most important groups:\n",
                   base);
            print_top(imp, ng, cols, 5);
            rc = write_importance(dir, imp, rows, cols, image, s.err);
        }
        free(imp);
    }
    rc = mt_dist_agree(MPI_COMM_WORLD, rc, s.err);
    int exit_st = rc ? mt_cli_fail(s.rank, rc, s.err) : MT_EXIT_OK;
    mt_cli_session_free(&s);
    mt_cli_args_free(&a);
    return exit_st;
}
