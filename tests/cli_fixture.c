/* Shared by the command-line tests: a temporary directory with a small
 * dataset and config, and running commands in it (cli_fixture.h). */
#include "cli_fixture.h"

#include <limits.h>
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

char dir[64], bin[512], mpirun[512];
char out[1 << 16];

/* Runs a shell command (under timeout), captures stdout+stderr in out. */
int run(const char *fmt, ...)
{
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && timeout -k 5 120 %s 2>&1", dir, cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (rc == 124) /* what it printed is the only clue to where it hung */
        print_message("timed out after 120 s: %s\n%s\n", cmd, out);
    return rc;
}

void expect_output(const char *frag)
{
    if (!strstr(out, frag))
        fail_msg("output lacks '%s':\n%s", frag, out);
}

int count(const char *frag)
{
    int n = 0;
    for (const char *p = out; (p = strstr(p, frag)); p += strlen(frag))
        n++;
    return n;
}

void write_text(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Two prediction CSVs: same lines, same index and class, outputs within
 * 1e-5. */
void expect_same_csv(const char *a, const char *b)
{
    char pa[128], pb[128], la[512], lb[512];
    snprintf(pa, sizeof pa, "%s/%s", dir, a);
    snprintf(pb, sizeof pb, "%s/%s", dir, b);
    FILE *fa = fopen(pa, "r"), *fb = fopen(pb, "r");
    assert_non_null(fa);
    assert_non_null(fb);
    int lines = 0;
    while (fgets(la, sizeof la, fa)) {
        assert_non_null(fgets(lb, sizeof lb, fb));
        lines++;
        char *sa, *sb;
        char *ta = strtok_r(la, ",\n", &sa), *tb = strtok_r(lb, ",\n", &sb);
        for (int col = 0; ta || tb; col++) {
            assert_true(ta && tb);
            if (col < 2 || lines == 1)
                assert_string_equal(ta, tb);
            else if (fabs(atof(ta) - atof(tb)) > 1e-5)
                fail_msg("%s vs %s line %d: %s != %s", a, b, lines, ta, tb);
            ta = strtok_r(NULL, ",\n", &sa);
            tb = strtok_r(NULL, ",\n", &sb);
        }
    }
    assert_null(fgets(lb, sizeof lb, fb));
    assert_int_equal(lines, 121);
    fclose(fa);
    fclose(fb);
}

/* 120 samples of 4x4 with the label written into the pixels; with
 * one_class every label is 0 (of 3 classes). */
void write_data(const char *name, int32_t bad_label, int one_class)
{
    enum { N = 120, S = 16 };
    uint8_t x[N * S];
    int32_t y[N];
    for (size_t i = 0; i < N; i++) {
        y[i] = one_class ? 0 : (int32_t)(i % 3);
        for (size_t j = 0; j < S; j++)
            x[i * S + j] = (uint8_t)(j % 3 == (size_t)y[i] ? 200 : 20 + i % 7);
    }
    if (bad_label)
        y[7] = bad_label;
    char path[128], err[MT_ERR_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (mt_dataset_write(path, N, (mt_shape){1, 4, 4}, x, NULL, y, 3, NULL,
                         err))
        fail_msg("%s", err);
}

const char good_ini[] =
    "[run]\ndir = run\nprogress = lines\n"
    "[data]\ntrain = d.h5\ntest = d.h5\n"
    "[train]\nepochs = 20\nbatch = 16\nlog_every = 2\n"
    "[optimizer]\ntype = adam\nlr = 0.01\n"
    "[flatten]\n[dense]\nunits = 8\nactivation = relu\n"
    "[dense]\nunits = 3\n[softmax]\n";

int cli_setup(void **s)
{
    /* The commands run in a temporary directory: the binary's path must
     * be absolute (make check sets MPITRAIN_BUILDDIR; else the current
     * directory, when it is the build directory). */
    const char *b = getenv("MPITRAIN_BUILDDIR");
    char cwd[PATH_MAX];
    if (!b)
        b = getcwd(cwd, sizeof cwd);
    snprintf(bin, sizeof bin, "%s/mpitrain", b ? b : ".");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "cli tests: %s not found: run them with make check "
                        "or from the build directory\n",
                bin);
        return -1;
    }
    snprintf(mpirun, sizeof mpirun,
             "%s --allow-run-as-root --oversubscribe",
             getenv("MPIRUN") ? getenv("MPIRUN") : "mpirun");
    snprintf(dir, sizeof dir, "/tmp/mt_test_cli_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    write_data("d.h5", 0, 0);
    write_text("good.ini", good_ini);
    return 0;
}

int cli_teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

/* Shell code that waits (up to a minute) for an epoch summary in log: then
 * training runs and the signal handlers are in place. */
const char *wait_epoch(const char *log)
{
    static char buf[2][200];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k],
             "for i in $(seq 600); do grep -q \"train loss\" %s 2>/dev/null "
             "&& break; sleep 0.1; done",
             log);
    return buf[k];
}
