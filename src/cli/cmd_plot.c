/* mpitrain plot: loss and accuracy per epoch, train and validation, from a
 * run's metrics.jsonl, drawn by gnuplot as SVG. The log is read with
 * jansson, one JSON object per line. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mpitrain/core.h"

static const char usage[] =
    "usage: mpitrain plot RUN_DIR|SEARCH_DIR [--output FILE.svg]\n"
    "\n"
    "Draws loss and accuracy per epoch for training and validation from\n"
    "RUN_DIR/metrics.jsonl into an SVG (default RUN_DIR/metrics.svg), with\n"
    "gnuplot (Debian: gnuplot-nox). Overfitting shows as the validation\n"
    "loss turning up while the training loss keeps going down.\n"
    "On a search's directory (SEARCH_DIR/journal.jsonl) it draws each\n"
    "trial's metric against each varied parameter (default\n"
    "SEARCH_DIR/search.svg).\n";

/* Writes "epoch train_loss val_loss train_acc val_acc" rows ("NaN" where
 * a split or value is missing) from the log; returns rows or -1. */
static long tabulate(const char *log, FILE *dat, char *err)
{
    FILE *f = fopen(log, "r");
    if (!f) {
        mt_seterr(err, "%s: %s", log, strerror(errno));
        return -1;
    }
    char line[4096];
    long rows = 0, lineno = 0, last = 0;
    double v[4] = {NAN, NAN, NAN, NAN};
    while (fgets(line, sizeof line, f)) {
        lineno++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) {
            mt_seterr(err, "%s:%ld: not JSON: %s", log, lineno, je.text);
            fclose(f);
            return -1;
        }
        const char *split = json_string_value(json_object_get(o, "split"));
        long epoch = (long)json_integer_value(json_object_get(o, "epoch"));
        json_t *loss = json_object_get(o, "loss");
        json_t *acc = json_object_get(o, "accuracy");
        int col = split && !strcmp(split, "train") ? 0
                  : split && !strcmp(split, "val") ? 1
                                                    : -1;
        if (col >= 0) {
            if (epoch != last && last) {
                fprintf(dat, "%ld %g %g %g %g\n", last, v[0], v[1], v[2],
                        v[3]);
                rows++;
                v[0] = v[1] = v[2] = v[3] = NAN;
            }
            last = epoch;
            v[col] = json_is_number(loss) ? json_number_value(loss) : NAN;
            v[2 + col] = json_is_number(acc) ? json_number_value(acc) : NAN;
        }
        json_decref(o);
    }
    fclose(f);
    if (last) {
        fprintf(dat, "%ld %g %g %g %g\n", last, v[0], v[1], v[2], v[3]);
        rows++;
    }
    return rows;
}

static const char script[] =
    "set terminal svg size 960,420 dynamic font 'sans,12'\n"
    "set output '%s'\n"
    "set multiplot layout 1,2 title '%s'\n"
    "set xlabel 'epoch'\n"
    "set grid\n"
    "set key top right\n"
    "set title 'loss'\n"
    "plot '%s' using 1:2 with linespoints title 'train', "
    "'' using 1:3 with linespoints title 'validation'\n"
    "set key bottom right\n"
    "set title 'accuracy'\n"
    "plot '%s' using 1:4 with linespoints title 'train', "
    "'' using 1:5 with linespoints title 'validation'\n"
    "unset multiplot\n";

int mt_cli_plot(int argc, char **argv)
{
    const char *dir = NULL, *output = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s", usage);
            return MT_EXIT_OK;
        }
        if (!strcmp(argv[i], "--output") && i + 1 < argc)
            output = argv[++i];
        else if (!dir && argv[i][0] != '-')
            dir = argv[i];
        else
            dir = NULL, i = argc;
    }
    if (!dir) {
        fprintf(stderr, "%s", usage);
        return MT_EXIT_USAGE;
    }
    char log[4096], dat[4096], svg[4096], err[MT_ERR_LEN] = "";
    snprintf(log, sizeof log, "%s/journal.jsonl", dir);
    if (access(log, F_OK) == 0) {
        snprintf(svg, sizeof svg, "%s", output ? output : "");
        if (!output)
            snprintf(svg, sizeof svg, "%s/search.svg", dir);
        return mt__plot_search(dir, log, svg);
    }
    snprintf(log, sizeof log, "%s/metrics.jsonl", dir);
    snprintf(dat, sizeof dat, "%s/metrics.dat", dir);
    snprintf(svg, sizeof svg, "%s", output ? output : "");
    if (!output)
        snprintf(svg, sizeof svg, "%s/metrics.svg", dir);
    FILE *d = fopen(dat, "w");
    if (!d) {
        mt_seterr(err, "%s: %s", dat, strerror(errno));
        return mt_cli_fail(0, MT_EIO, err);
    }
    long rows = tabulate(log, d, err);
    fclose(d);
    if (rows <= 0) {
        if (rows == 0)
            mt_seterr(err, "%s: no epoch records to plot", log);
        return mt_cli_fail(0, MT_EFORMAT, err);
    }
    FILE *gp = popen("gnuplot 2>&1", "w");
    int st = gp ? (fprintf(gp, script, svg, dir, dat, dat), pclose(gp)) : -1;
    if (st != 0) {
        mt_seterr(err, "gnuplot failed or is missing (apt-get install "
                       "gnuplot-nox)");
        return mt_cli_fail(0, MT_EIO, err);
    }
    printf("wrote %s (%ld epochs)\n", svg, rows);
    return MT_EXIT_OK;
}
