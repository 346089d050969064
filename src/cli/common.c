#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>
#include <mpi.h>

#include "cli/cli.h"
#include "mpitrain/core.h"
#include "mpitrain/watchdog.h"

static int allows(const char *allowed, const char *name)
{
    const char *p = strstr(allowed, name);
    size_t n = strlen(name);
    return p && (p == allowed || p[-1] == ',') &&
           (p[n] == ',' || p[n] == '\0');
}

int mt_cli_parse(int argc, char **argv, const char *usage,
                 const char *allowed, mt_cli_args *a)
{
    static const struct option opts[] = {
        {"set", required_argument, 0, 's'},
        {"weights", required_argument, 0, 'w'},
        {"input", required_argument, 0, 'i'},
        {"output", required_argument, 0, 'o'},
        {"data", required_argument, 0, 'd'},
        {"json", no_argument, 0, 'j'},
        {"resume", required_argument, 0, 'r'},
        {"stop-after", required_argument, 0, 'S'},
        {"samples", required_argument, 0, 'n'},
        {"group", required_argument, 0, 'g'},
        {"dry-run", no_argument, 0, 'D'},
        {"status", no_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->sets = calloc((size_t)argc, sizeof(char *));
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *name = NULL;
        for (const struct option *o = opts; o->name; o++)
            if (o->val == c)
                name = o->name;
        if (c == 'h') {
            printf("%s", usage);
            return -1;
        }
        if (c == '?' || (c != 's' && !allows(allowed, name))) {
            if (c != '?')
                fprintf(stderr, "mpitrain: option --%s does not apply here\n",
                        name);
            fprintf(stderr, "%s", usage);
            return MT_EXIT_USAGE;
        }
        switch (c) {
        case 's': a->sets[a->n_sets++] = optarg; break;
        case 'w': a->weights = optarg; break;
        case 'i': a->input = optarg; break;
        case 'o': a->output = optarg; break;
        case 'd': a->data = optarg; break;
        case 'j': a->json = 1; break;
        case 'r': a->resume = optarg; break;
        case 'S': a->stop_after = strtoull(optarg, NULL, 10); break;
        case 'n': a->samples = strtoull(optarg, NULL, 10); break;
        case 'g': a->group = strtoull(optarg, NULL, 10); break;
        case 'D': a->dry_run = 1; break;
        case 'T': a->status = 1; break;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "%s", usage);
        return MT_EXIT_USAGE;
    }
    a->config = argv[optind];
    return 0;
}

void mt_cli_args_free(mt_cli_args *a) { mt_free(a->sets); }

int mt_cli_fail(int rank, int rc, const char *msg)
{
    if (rank == 0) {
        /* A requested stop is not an error: the state was saved. */
        fprintf(stderr, "mpitrain: %s%s\n", rc == MT_ESTOPPED ? "" : "error: ",
                msg);
        fflush(stderr);
    }
    return rc == MT_ENUMERIC   ? MT_EXIT_NUMERIC
           : rc == MT_ESTOPPED ? MT_EXIT_STOPPED
                               : MT_EXIT_ERROR;
}

/* From the watchdog thread: the report, then (NULL) the end. Every rank
 * that still runs prints its own line (they pass the deadline within a
 * second or two of each other); the watchdog answers roll calls between
 * the two calls, and that pause lets the others print theirs before
 * mpirun, seeing this exit, ends the job. */
static void on_deadline(const char *report, void *user)
{
    if (!report)
        _exit(MT_EXIT_DEADLINE);
    fflush(stdout);
    fprintf(stderr, "mpitrain: error: %s\n", report);
    fflush(stderr);
}

int mt_cli_watchdog(double deadline_s, char *err)
{
    return mt_watchdog_start(MPI_COMM_WORLD, deadline_s, on_deadline, NULL,
                             err);
}

/* Set by the first SIGTERM/SIGUSR1/SIGINT; the trainer polls it at step
 * boundaries. A second signal ends the process at once, if it comes at
 * least 2 s after the first: at a time limit Slurm's SIGTERM reaches a
 * rank twice within milliseconds (from slurmstepd and relayed by srun),
 * which must not cut the save short. */
volatile sig_atomic_t mt_cli_stop_requested;
static struct timespec first_signal;

static void on_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe */
    if (!mt_cli_stop_requested) {
        first_signal = now;
        mt_cli_stop_requested = 1;
        return;
    }
    if (now.tv_sec - first_signal.tv_sec >= 2)
        _exit(128 + sig);
}

void mt_cli_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
}

/* Does OpenBLAS's kernel use at least the vector width of `isa`? */
static int blas_core_reaches(const char *core, mt_isa isa)
{
    static const char *const avx512[] = {"SkylakeX", "Cooperlake",
                                         "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", NULL};
    for (int i = 0; avx512[i]; i++)
        if (!strcasecmp(core, avx512[i]))
            return 1;
    if (isa == MT_ISA_AVX512)
        return 0;
    for (int i = 0; avx2[i]; i++)
        if (!strcasecmp(core, avx2[i]))
            return 1;
    return isa == MT_ISA_BASELINE;
}

/* The OpenBLAS kernel that matches a SIMD path chosen below the CPU's
 * best (MPITRAIN_ISA), so that the whole process runs as on a node that
 * has only that path; NULL to keep OpenBLAS's own choice. On the best
 * path, a kernel narrower than the CPU is replaced: OpenBLAS 0.3.21 picks
 * Haswell/Zen on AMD CPUs with AVX-512, and Prescott (SSE3, a quarter of
 * the speed) on Intel models newer than it knows, such as model 207
 * (Emerald Rapids) as a guest: sgemm 1024^3 on one core, 2026-12-02,
 * Prescott 30 GFLOP/s, Haswell 62, SkylakeX 122, Cooperlake 139. */
static const char *blas_core_for_isa(void)
{
    mt_isa isa = mt_isa_current();
    if (isa < mt_isa_best())
        return isa == MT_ISA_BASELINE ? "Prescott" : "Haswell";
    const char *core = openblas_get_corename();
    if (!core || blas_core_reaches(core, isa))
        return NULL;
    if (isa == MT_ISA_AVX512 && has_avx512())
        return __builtin_cpu_supports("avx512bf16") ? "Cooperlake"
                                                     : "SkylakeX";
    return isa == MT_ISA_AVX2 ? "Haswell" : NULL;
}

void mt_cli_blas_core_fix(char **argv)
{
    /* OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded, so the only
     * way to change its choice is to start again with the variable set.
     * The user's own setting, or MPITRAIN_BLAS_CORE_FIX=0, wins. */
    const char *off = getenv("MPITRAIN_BLAS_CORE_FIX");
    if (getenv("OPENBLAS_CORETYPE") || (off && strcmp(off, "0") == 0))
        return;
    const char *core = blas_core_for_isa();
    if (!core)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    /* The binary's own path, not /proc/self/exe: the process keeps its
     * name ("mpitrain" in ps, top and pgrep, not "exe"). */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        execv(self, argv);
    }
    /* exec failed: carry on with the kernel OpenBLAS chose. */
    unsetenv("OPENBLAS_CORETYPE");
}

void mt_cli_blas_describe(char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "OpenBLAS %s core (CPU AVX-512: "
                                          "%s)\nSIMD path %s (this CPU has:",
                                openblas_get_corename(),
                                has_avx512() ? "yes" : "no",
                                mt_isa_name(mt_isa_current()));
    for (int i = 0; i <= (int)mt_isa_best() && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, " %s",
                              mt_isa_name((mt_isa)i));
    if (n < len)
        n += (size_t)snprintf(buf + n, len - n, ")%s%s",
                              *mt_isa_note() ? "\n" : "", mt_isa_note());
    int direct = mt_isa_current() >= MT_ISA_AVX512;
    if (n < len)
        n += (size_t)snprintf(buf + n, len - n, "\nconvolutions (auto): %s",
                              direct ? "direct AVX-512 below 16 input "
                                       "channels, "
                                     : "");
    if (n < len && mt_onednn_version())
        n += (size_t)snprintf(buf + n, len - n,
                              "%s's direct kernels from 3 input channels, "
                              "else im2col + OpenBLAS ([conv] backend)",
                              mt_onednn_version());
    else if (n < len)
        n += (size_t)snprintf(buf + n, len - n,
                              "%sim2col + OpenBLAS (built without oneDNN)",
                              direct ? "else " : "");
}
