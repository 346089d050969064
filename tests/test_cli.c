/* The mpitrain command end to end: real processes, real files, mpirun for
 * several ranks. Each bad input must give a non-zero exit and one message
 * naming the file, line, key or layer, and leave no output that looks
 * complete. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "cli_fixture.h"

static void test_usage_and_version(void **s)
{
    assert_int_equal(run("%s", bin), 2);
    assert_int_equal(run("%s --help", bin), 0);
    expect_output("train CONFIG");
    assert_int_equal(run("%s --version", bin), 0);
    expect_output("mpitrain 0.");
    expect_output("OpenBLAS");
    assert_int_equal(run("%s train --help", bin), 0);
    expect_output("--set");
    assert_int_equal(run("%s eval --help", bin), 0);
    assert_int_equal(run("%s predict --help", bin), 0);
    assert_int_equal(run("%s convert --help", bin), 0);
    assert_int_equal(run("%s train", bin), 2);
    assert_int_equal(run("%s train good.ini --bogus", bin), 2);
    assert_int_equal(run("%s frobnicate", bin), 2);
}

static void test_train_eval_predict(void **s)
{
    assert_int_equal(run("%s train good.ini", bin), 0);
    expect_output("epoch 20/20");
    expect_output("test accuracy");
    expect_output("weights written to run/weights.h5");
    assert_int_equal(run("test ! -e run/weights.h5.partial"), 0);
    assert_int_equal(run("wc -l < run/metrics.jsonl"), 0);
    assert_int_equal(atoi(out), 41); /* 20 train + 20 val + 1 test */
    assert_int_equal(run("grep -c '\"split\":\"val\"' run/metrics.jsonl"), 0);
    assert_int_equal(atoi(out), 20);

    assert_int_equal(run("%s eval good.ini --weights run/weights.h5 --json",
                         bin),
                     0);
    expect_output("{\"data\":\"d.h5\"");
    expect_output("\"samples\":120");
    /* The task is easy: a trained model gets nearly all of it right. */
    const char *acc = strstr(out, "\"accuracy\":");
    assert_non_null(acc);
    if (atof(acc + 11) <= 0.9)
        fail_msg("accuracy too low: %s", out);

    /* The run's curves, drawn by gnuplot (if it is there). */
    if (run("command -v gnuplot") == 0) {
        assert_int_equal(run("%s plot run", bin), 0);
        expect_output("wrote run/metrics.svg (20 epochs)");
        assert_int_equal(run("grep -c '<svg' run/metrics.svg"), 0);
        assert_int_equal(run("wc -l < run/metrics.dat"), 0);
        assert_int_equal(atoi(out), 20);
    }
    assert_int_equal(run("%s plot nowhere", bin), 1);
    expect_output("nowhere/metrics");
    assert_int_equal(run("%s predict good.ini --weights run/weights.h5 "
                         "--input d.h5 --output p.csv",
                         bin),
                     0);
    assert_int_equal(run("wc -l < p.csv"), 0);
    assert_int_equal(atoi(out), 121);
    assert_int_equal(run("sed -n 2p p.csv"), 0);
    assert_int_equal(strncmp(out, "0,0,", 4), 0);
    /* Ranks predict a share each; rank 0 writes them in file order. The
     * same rows and classes, outputs equal to rounding (OpenBLAS blocks
     * a share of 40 rows differently from 120). */
    assert_int_equal(run("%s -np 3 %s predict good.ini --weights "
                         "run/weights.h5 --input d.h5 --output p3.csv",
                         mpirun, bin),
                     0);
    expect_same_csv("p.csv", "p3.csv");
    assert_int_equal(run("%s -np 2 %s predict good.ini --weights "
                         "run/weights.h5 --input d.h5 > p2.csv",
                         mpirun, bin),
                     0);
    expect_same_csv("p.csv", "p2.csv");
}

/* Row i's probabilities in a predict CSV into p (3 classes). */
static void csv_probs(const char *name, double p[120][3])
{
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f)); /* the header */
    for (int i = 0; i < 120; i++) {
        int idx, cls;
        assert_non_null(fgets(line, sizeof line, f));
        assert_int_equal(sscanf(line, "%d,%d,%lf,%lf,%lf", &idx, &cls,
                                &p[i][0], &p[i][1], &p[i][2]),
                         5);
    }
    fclose(f);
}

/* An ensemble's eval is the loss and accuracy of the members' averaged
 * probabilities (computed here from their predict outputs; labels are
 * i % 3), whether the files are listed or in a list file; predict takes
 * one file. */
static void test_ensemble_averages_probabilities(void **s)
{
    static double pa[120][3], pb[120][3];
    const char *short_run = "--set train.epochs=1 --set data.test=";
    assert_int_equal(run("%s train good.ini %s --set run.dir=ea", bin,
                         short_run), 0);
    assert_int_equal(run("%s train good.ini %s --set run.dir=eb "
                         "--set run.seed=9",
                         bin, short_run),
                     0);
    for (int m = 0; m < 2; m++) {
        assert_int_equal(run("%s predict good.ini --weights e%c/weights.h5 "
                             "--input d.h5 --output e%c.csv",
                             bin, "ab"[m], "ab"[m]),
                         0);
    }
    csv_probs("ea.csv", pa);
    csv_probs("eb.csv", pb);
    double loss = 0.0;
    int correct = 0, differ = 0;
    for (int i = 0; i < 120; i++) {
        double q[3];
        int best = 0;
        for (int k = 0; k < 3; k++) {
            q[k] = (pa[i][k] + pb[i][k]) / 2.0;
            best = q[k] > q[best] ? k : best;
            differ |= fabs(pa[i][k] - pb[i][k]) > 1e-3;
        }
        loss -= log(q[i % 3]) / 120.0;
        correct += best == i % 3;
    }
    assert_true(differ); /* two different members */
    const char *forms[] = {"ea/weights.h5,eb/weights.h5", "@list.txt"};
    write_text("list.txt", "ea/weights.h5\n\neb/weights.h5\n");
    for (int f = 0; f < 2; f++) {
        assert_int_equal(run("%s eval good.ini --weights %s --json", bin,
                             forms[f]),
                         0);
        const char *l = strstr(out, "\"loss\":"),
                   *a = strstr(out, "\"accuracy\":");
        assert_non_null(l);
        assert_non_null(a);
        if (fabs(atof(l + 7) - loss) > 1e-4 ||
            fabs(atof(a + 11) - correct / 120.0) > 1e-9)
            fail_msg("ensemble loss %.6f, accuracy %d/120 expected: %s",
                     loss, correct, out);
    }
    assert_int_equal(run("%s predict good.ini --weights %s --input d.h5",
                         bin, forms[0]),
                     1);
    expect_output("an ensemble is for eval only");
}

/* plot on a search directory: a panel per varied parameter, numbers on
 * their axis (a log one for rates spanning decades), names as
 * categories, from the journal alone. */
static void test_plot_a_search(void **s)
{
    char text[1024];
    snprintf(text, sizeof text,
             "%s[search]\noptimizer.lr = grid(0.001, 0.01, 0.1)\n"
             "layer2.activation = grid(relu, tanh)\nkeep_top = 3\n",
             good_ini);
    write_text("s.ini", text);
    assert_int_equal(run("%s search s.ini --set run.dir=srch "
                         "--set train.epochs=2",
                         bin),
                     0);
    expect_output("ensemble: the best 3 trials' weights are listed in "
                  "srch/ensemble.txt");
    assert_int_equal(run("%s eval good.ini --weights @srch/ensemble.txt",
                         bin),
                     0);
    expect_output("accuracy");
    if (run("command -v gnuplot") != 0)
        return;
    assert_int_equal(run("%s plot srch", bin), 0);
    expect_output("wrote srch/search.svg (6 trials, 2 parameters)");
    assert_int_equal(run("grep -c '<svg' srch/search.svg"), 0);
    /* lr: numbers, three of each; activation: categories 0 and 1 */
    assert_int_equal(run("cut -d' ' -f1 srch/search-0.dat | sort -u | "
                         "tr '\\n' ' '"),
                     0);
    expect_output("0.001 0.01 0.1 ");
    assert_int_equal(run("cut -d' ' -f1,2 srch/search-1.dat | sort -u | "
                         "tr '\\n' ' '"),
                     0);
    expect_output("0 relu 1 tanh ");
}

/* progress = auto: plain lines when the output is a file or a pipe, also
 * under mpirun (which gives every rank a pseudo-terminal); the bar when
 * it ends on a terminal (script(1) provides one), with or without
 * mpirun. */
static void test_progress_follows_the_real_output(void **s)
{
    const char *opts = "--set run.progress=auto --set train.epochs=1 "
                       "--set run.dir=prog";
    assert_int_equal(run("%s -np 2 %s train good.ini %s", mpirun, bin,
                         opts),
                     0);
    assert_null(strchr(out, '\r'));
    expect_output("epoch 1/1 step 2/7 loss");
    expect_output(" samples/s eta "); /* the time the run still needs */
    if (run("command -v script") != 0)
        return;
    assert_int_equal(run("script -qec '%s -np 2 %s train good.ini %s' "
                         "/dev/null",
                         mpirun, bin, opts),
                     0);
    expect_output("epoch 1/1 [");
    assert_int_equal(run("script -qec '%s train good.ini %s' /dev/null", bin,
                         opts),
                     0);
    expect_output("epoch 1/1 [");
}

static void test_multi_rank_prints_once(void **s)
{
    assert_int_equal(run("%s -np 3 %s train good.ini --set run.dir=run3",
                         mpirun, bin),
                     0);
    assert_int_equal(count("epoch 20/20  train loss"), 1);
    assert_int_equal(count("test accuracy"), 1);
}

/* A config with one line changed; returns the exit status. */
static int train_with(const char *from, const char *to, const char *extra)
{
    char text[2048]; /* good_ini and a few lines more */
    const char *p = strstr(good_ini, from);
    assert_non_null(p);
    snprintf(text, sizeof text, "%.*s%s%s", (int)(p - good_ini), good_ini,
             to, p + strlen(from));
    write_text("bad.ini", text);
    return run("%s train bad.ini --set run.dir=badrun %s", bin,
               extra ? extra : "");
}

static void expect_one_error(const char *frag)
{
    expect_output(frag);
    assert_int_equal(count("mpitrain: error:"), 1);
    assert_int_equal(run("test ! -e badrun/weights.h5"), 0);
}

static void test_bad_data_files(void **s)
{
    assert_int_equal(train_with("train = d.h5", "train = missing.h5", NULL),
                     1);
    expect_one_error("data file missing.h5: No such file or directory");

    write_text("notx.h5", "");
    run("h5copy -i d.h5 -o nox.h5 -s /y -d /y");
    assert_int_equal(train_with("train = d.h5", "train = nox.h5", NULL), 1);
    expect_one_error("nox.h5: no dataset /x");

    write_data("badlabel.h5", 12, 0);
    assert_int_equal(train_with("train = d.h5", "train = badlabel.h5", NULL),
                     1);
    expect_one_error("badlabel.h5: /y[7] = 12 is out of range");

    /* A watched AUC that the data leaves undefined fails after epoch 1,
     * naming the key, instead of never improving. */
    write_data("oneclass.h5", 0, 1);
    assert_int_equal(train_with("train = d.h5", "train = oneclass.h5",
                                "--set train.monitor=val_roc_auc"),
                     1);
    expect_one_error("[train] monitor = val_roc_auc has no value after the "
                     "first epoch");
}

/* --dry-run meets start-up errors and the plan, and writes nothing. */
static void test_dry_run(void **s)
{
    assert_int_equal(run("%s train good.ini --dry-run --set run.dir=dry",
                         bin),
                     0);
    expect_output("dry run: 7 steps per epoch, 140 steps in all, from "
                  "epoch 1; nothing trained or written");
    assert_int_equal(run("test ! -e dry"), 0);
    /* The plan: roles, what a rank owns, its memory. */
    assert_int_equal(run("%s -np 3 %s train good.ini --dry-run --set "
                         "run.dir=dry",
                         mpirun, bin),
                     0);
    expect_output("plan: ranks 0-2: data-parallel worker (data-parallel "
                  "group of 3); layers 1-4 of 4, parameters [0, 163) of "
                  "163 owned;");
    expect_output("2 optimizer slots, activations of 6 samples");
    /* A parameter server: shards cut at tensor rows (dense2's weight rows
     * hold 16), or one dedicated server owning all. */
    assert_int_equal(run("%s -np 3 %s train good.ini --dry-run --set "
                         "parallel.sync=ps",
                         mpirun, bin),
                     0);
    expect_output("plan: rank 1: worker and parameter server "
                  "(data-parallel group of 3); layers 1-4 of 4, parameters "
                  "[48, 112) of 163 owned;");
    assert_int_equal(run("%s -np 3 %s train good.ini --dry-run --set "
                         "parallel.sync=ps --set parallel.servers=1",
                         mpirun, bin),
                     0);
    expect_output("plan: ranks 0-1: worker (data-parallel group of 2); "
                  "layers 1-4 of 4, parameters [0, 0) of 163 owned;");
    expect_output("plan: rank 2: parameter server (data-parallel group of "
                  "2); layers 1-4 of 4, parameters [0, 163) of 163 owned;");
    assert_int_equal(train_with("train = d.h5", "train = missing.h5",
                                "--dry-run"),
                     1);
    expect_one_error("data file missing.h5: No such file or directory");
}

static void test_bad_config(void **s)
{
    assert_int_equal(train_with("batch = 16", "batch = 0", NULL), 1);
    expect_one_error("bad.ini:9: [train] batch = '0'");
    assert_int_equal(train_with("batch = 16", "batsh = 16", NULL), 1);
    expect_one_error("bad.ini:9: [train] unknown key 'batsh'");
    assert_int_equal(train_with("lr = 0.01", "lr = 0.0l", NULL), 1);
    expect_one_error("bad.ini:13: [optimizer] lr = '0.0l'");
    assert_int_equal(train_with("units = 3", "units = 3\ninputs = 100",
                                NULL),
                     1);
    expect_one_error(
        "bad.ini:18: dense4: inputs = 100 but the previous layer gives 8");
    assert_int_equal(train_with("units = 8", "units = 8",
                                "--set train.class_weights=1,2"),
                     1);
    expect_one_error("[train] class_weights has 2 values for 3 classes");
    assert_int_equal(train_with("units = 8", "units = 8",
                                "--set train.class_weights=1,x,2"),
                     1);
    expect_one_error("value 2 is not a non-negative number");
    assert_int_equal(train_with("units = 8", "units = 8", "--set x"), 1);
    expect_one_error("--set x: expected section.key=value");
}

static void test_divergence(void **s)
{
    write_text("div.ini", "[run]\ndir = badrun\n[data]\ntrain = d.h5\n"
                          "[train]\nloss = mse\n[optimizer]\nlr = 500\n"
                          "[flatten]\n[dense]\nunits = 3\n");
    assert_int_equal(run("%s train div.ini", bin), 3);
    expect_one_error("the run diverged");
}

static void test_errors_on_every_rank_count(void **s)
{
    for (int np = 2; np <= 4; np++) {
        train_with("train = d.h5", "train = missing.h5", NULL);
        int st = run("%s -np %d %s train bad.ini --set run.dir=badrun",
                     mpirun, np, bin);
        assert_int_not_equal(st, 0);
        assert_int_not_equal(st, 128); /* not killed by the timeout */
        /* The rank is named once (set-up agrees more than once). */
        expect_output("mpitrain: error: rank 0: data file missing.h5: No "
                      "such file");
        expect_one_error("missing.h5: No such file");
    }
}

/* Heap allocations of a one-epoch run over `samples` samples, 2 a step,
 * counted by valgrind. */
static long heap_allocs(int samples)
{
    int st = run("valgrind %s/.libs/mpitrain train good.ini --set "
                 "run.dir=vg --set data.validation=0 --set data.test= "
                 "--set train.epochs=1 --set train.batch=2 "
                 "--set data.limit=%d --set run.progress=none",
                 getenv("MPITRAIN_BUILDDIR"), samples);
    assert_int_equal(st, 0);
    const char *p = strstr(out, "total heap usage: ");
    assert_non_null(p);
    char digits[32];
    size_t k = 0;
    for (p += 18; *p && *p != ' ' && k < sizeof digits - 1; p++)
        if (*p != ',')
            digits[k++] = *p;
    digits[k] = '\0';
    return atol(digits);
}

/* The step loop allocates nothing: five times the steps in one epoch, the
 * same number of allocations (give or take Open MPI's housekeeping).
 * Per epoch there are some: the samples of the epoch are fetched. */
static void test_no_allocation_per_step(void **s)
{
#ifdef MPITRAIN_SANITIZERS
    skip(); /* valgrind cannot run AddressSanitizer binaries */
#endif
    if (system("valgrind --version >/dev/null 2>&1") != 0 ||
        !getenv("MPITRAIN_BUILDDIR"))
        skip();
    long few = heap_allocs(24), many = heap_allocs(120);
    if (labs(many - few) > 30)
        fail_msg("12 steps: %ld allocations, 60 steps: %ld", few, many);
}

/* The real dataset, reduced so that it runs in seconds: LeNet-5 on a
 * fifth of Fashion-MNIST for two epochs, on two ranks. */
static void test_fashion_mnist_lenet(void **s)
{
    if (access("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
               R_OK) != 0) {
        skip();
    }
    assert_int_equal(run("%s convert fashion-mnist fm", bin), 0);
    const char *src = getenv("MPITRAIN_SRCDIR");
    assert_int_equal(
        run("%s -np 2 %s train %s/examples/lenet5-fashion.ini "
            "--set data.train=fm/train.h5 --set data.test=fm/t10k.h5 "
            "--set data.limit=12000 --set train.epochs=2 --set run.dir=fm/run "
            "--set checkpoint.every_steps=100",
            mpirun, bin, src ? src : ".."),
        0);
    assert_int_equal(run("%s eval %s/examples/lenet5-fashion.ini --json "
                         "--weights fm/run/weights.h5 --data fm/t10k.h5",
                         bin, src ? src : ".."),
                     0);
    const char *acc = strstr(out, "\"accuracy\":");
    assert_non_null(acc);
    double a = atof(acc + 11);
    printf("LeNet-5, 10800 samples x 2 epochs: test accuracy %.4f\n", a);
    assert_true(a > 0.8);
    /* eval reads the final checkpoint as it reads weights. */
    assert_int_equal(run("%s eval %s/examples/lenet5-fashion.ini --json "
                         "--weights fm/run/checkpoints/$(cat "
                         "fm/run/checkpoints/latest) --data fm/t10k.h5",
                         bin, src ? src : ".."),
                     0);
    acc = strstr(out, "\"accuracy\":");
    assert_non_null(acc);
    assert_true(atof(acc + 11) == a);
    /* Counts and the per-class table: the same whatever the rank count
     * (exact counts, gathered). The AUC is computed from the scores, which
     * the rank count's chunks round differently (a sample's place in a
     * GEMM or a oneDNN kernel changes its last bits): to 1e-7. */
    char one[8192];
    const char *tail = strstr(out, "\"top5_accuracy\"");
    assert_non_null(tail);
    assert_non_null(strstr(out, "\"confusion_matrix\":[["));
    snprintf(one, sizeof one, "%s", tail);
    double auc = atof(strstr(out, "\"roc_auc\":") + 10);
    assert_int_equal(run("%s -np 3 %s eval %s/examples/lenet5-fashion.ini "
                         "--json --weights fm/run/weights.h5 --data "
                         "fm/t10k.h5",
                         mpirun, bin, src ? src : ".."),
                     0);
    tail = strstr(out, "\"top5_accuracy\"");
    assert_non_null(tail);
    assert_string_equal(one, tail);
    assert_true(fabs(atof(strstr(out, "\"roc_auc\":") + 10) - auc) < 1e-7);
    /* Permutation importance: 7 x 7 blocks of 4 x 4 pixels, one CSV row
     * each; shuffling every pixel block costs accuracy somewhere. */
    assert_int_equal(run("%s explain %s/examples/lenet5-fashion.ini "
                         "--weights fm/run/weights.h5 --data fm/t10k.h5 "
                         "--samples 300 --output fm/explain",
                         bin, src ? src : ".."),
                     0);
    expect_output("baseline accuracy");
    assert_int_equal(run("wc -l < fm/explain/importance.csv"), 0);
    assert_int_equal(atoi(out), 50);
    assert_int_equal(run("sort -t, -k4 -g fm/explain/importance.csv | "
                         "tail -1 | cut -d, -f4"),
                     0);
    assert_true(atof(out) > 0.0);
    /* PyTorch (if Debian's python3-torch is installed) loads the same
     * weights with the documented example and gets the same accuracy. */
    if (run("/usr/bin/python3 -c 'import torch, h5py'") != 0) {
        printf("python3-torch or python3-h5py missing: PyTorch check "
               "skipped\n");
        return;
    }
    assert_int_equal(run("/usr/bin/python3 %s/examples/load_checkpoint.py "
                         "fm/run/weights.h5 fm/t10k.h5",
                         src ? src : ".."),
                     0);
    acc = strstr(out, "accuracy ");
    assert_non_null(acc);
    double pa = atof(acc + 9);
    printf("PyTorch on the same weights: %.4f\n", pa);
    assert_true(pa > a - 0.002 && pa < a + 0.002);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_version),
        cmocka_unit_test(test_train_eval_predict),
        cmocka_unit_test(test_ensemble_averages_probabilities),
        cmocka_unit_test(test_plot_a_search),
        cmocka_unit_test(test_multi_rank_prints_once),
        cmocka_unit_test(test_progress_follows_the_real_output),
        cmocka_unit_test(test_bad_data_files),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_dry_run),
        cmocka_unit_test(test_divergence),
        cmocka_unit_test(test_errors_on_every_rank_count),
        cmocka_unit_test(test_no_allocation_per_step),
        cmocka_unit_test(test_fashion_mnist_lenet),
    };
    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
