/* Faults end to end, through the mpitrain command: a signal saves and
 * exits 75, a stopped rank meets the deadline, a killed search resumes,
 * a full disk keeps the older checkpoint (docs/reliability.md). */
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

/* A signal makes every rank save and exit 75; --resume auto finishes. */
static void test_signal_saves_and_resume_finishes(void **s)
{
    write_text("sig.ini", "[run]\ndir = sigrun\nprogress = none\n"
                          "[data]\ntrain = d.h5\nvalidation = 0\n"
                          "[train]\nepochs = 100000000\nbatch = 16\n"
                          "[optimizer]\ntype = adam\nlr = 0.001\n"
                          "[flatten]\n[dense]\nunits = 3\n[softmax]\n");
    /* sh -c: the whole line runs under run()'s timeout, in the test
     * directory; output goes to a file (every epoch prints a line). */
    /* Signal only once training runs (the handlers are installed by then),
     * however slow the machine is to start. */
    assert_int_equal(run("sh -c '%s train sig.ini > sig.log 2>&1 & p=$!; "
                         "%s; kill -TERM $p; wait $p; echo status=$?'",
                         bin, wait_epoch("sig.log")),
                     0);
    expect_output("status=75");
    assert_int_equal(run("grep -E 'stopped|resuming' sig.log"), 0);
    expect_output("stopped on request at step");
    assert_int_equal(run("test -r sigrun/checkpoints/latest"), 0);
    /* Under mpirun, SIGUSR1 to mpirun reaches every rank (as from Slurm's
     * --signal=B:USR1 forwarded by the batch script). */
    assert_int_equal(run("sh -c '%s -np 2 %s train sig.ini --resume auto "
                         "> sig2.log 2>&1 & p=$!; %s; kill -USR1 $p; "
                         "wait $p; echo status=$?'",
                         mpirun, bin, wait_epoch("sig2.log")),
                     0);
    expect_output("status=75");
    assert_int_equal(run("grep -E 'stopped|resuming' sig2.log"), 0);
    expect_output("resuming from sigrun/checkpoints/ckpt-");
    assert_int_equal(count("stopped on request"), 1);
    assert_int_equal(run("%s train sig.ini --resume auto --set "
                         "train.epochs=1 > sig3.log 2>&1; tail -3 sig3.log",
                         bin),
                     0);
    expect_output("weights written to sigrun/weights.h5");
    /* A resume with other settings says what changed, as --set names it. */
    assert_int_equal(run("grep -A2 'differs from the checkpoint' sig3.log"),
                     0);
    expect_output("  train.epochs: 100000000 -> 1");
    /* Thousands of epochs make a long metrics log: keep the head. */
    assert_int_equal(run("%s inspect sigrun/checkpoints/$(cat "
                         "sigrun/checkpoints/latest) --json | head -c 4000",
                         bin),
                     0);
    expect_output("\"tensors\":[{\"name\":\"/model/dense2/bias\"");
}

/* kill -STOP of rank `victim` of np training wd.ini with `sets`, with
 * deadline_s = 10: every process has exited within 30 s of the stop,
 * mpirun with status 4, and the others' messages name the stopped rank.
 * Ranks are told apart by the OMPI_COMM_WORLD_RANK in their environment
 * (mpirun has none). */
static void stop_one(int np, int victim, const char *sets)
{
    assert_int_equal(
        run("sh -c 'rank() { for q in $(pgrep -f \"[t]rain wd.ini\"); "
            "do grep -qz \"^OMPI_COMM_WORLD_RANK=$1$\" /proc/$q/environ "
            "2>/dev/null && echo $q; done; }; "
            "%s -np %d %s train wd.ini %s > wd.log 2>&1 & p=$!; %s; "
            "v=$(rank %d); kill -STOP $v && echo stopped || { echo "
            "\"no rank to stop: [$v]\"; tail -5 wd.log; kill -9 $p; }; "
            "t0=$(date +%%s); "
            "wait $p; echo status=$? after=$(( $(date +%%s) - t0 )); "
            "sleep 1; [ -z \"$(rank \"[0-9]*\")\" ] && echo all-gone'",
            mpirun, np, bin, sets, wait_epoch("wd.log"), victim),
        0);
    expect_output("stopped");
    expect_output("status=4");
    expect_output("all-gone");
    const char *after = strstr(out, "after=");
    assert_non_null(after);
    int secs = atoi(after + 6);
    print_message("%d ranks%s%s, rank %d stopped: all exited %d s later\n",
                  np, *sets ? " " : "", sets, victim, secs);
    assert_true(secs <= 30);
    char named[128];
    snprintf(named, sizeof named, "; no answer from rank %d (stopped",
             victim);
    assert_int_equal(run("grep error: wd.log"), 0);
    print_message("%s", out);
    /* Every other rank reports, once. */
    assert_int_equal(count(named), np - 1);
    assert_int_equal(count("deadline_s = 10"), np - 1);
}

/* At 2, 3 and 4 ranks, data parallel; and a stage of a 2 x 2 pipeline
 * grid, whose neighbour waits in a point-to-point receive. */
static void test_stopped_rank_meets_the_deadline(void **s)
{
    write_text("wd.ini", "[run]\ndir = wdrun\nprogress = lines\n"
                         "deadline_s = 10\n"
                         "[data]\ntrain = d.h5\nvalidation = 0\n"
                         "[train]\nepochs = 100000000\nbatch = 16\n"
                         "[optimizer]\nlr = 0.001\n"
                         "[flatten]\n[dense]\nunits = 3\n[softmax]\n");
    for (int np = 2; np <= 4; np++)
        stop_one(np, np == 2 ? 0 : np - 2, "");
    stop_one(4, 1, "--set parallel.stages=2");
}

/* A parameter server with a dedicated server rank (rank 2 of 3): SIGUSR1
 * to mpirun makes workers and server save and exit 75; the resumed run
 * has the server's shard; a stopped server ends both workers within the
 * deadline, naming it. */
static void test_parameter_server_faults(void **s)
{
    write_text("ps.ini", "[run]\ndir = psrun\nprogress = lines\n"
                         "deadline_s = 10\n"
                         "[data]\ntrain = d.h5\nvalidation = 0\n"
                         "[train]\nepochs = 100000000\nbatch = 16\n"
                         "[optimizer]\ntype = adam\nlr = 0.001\n"
                         "[parallel]\nsync = ps\nservers = 1\n"
                         "[flatten]\n[dense]\nunits = 3\n[softmax]\n");
    assert_int_equal(run("sh -c '%s -np 3 %s train ps.ini > ps.log 2>&1 & "
                         "p=$!; %s; kill -USR1 $p; wait $p; "
                         "echo status=$?'",
                         mpirun, bin, wait_epoch("ps.log")),
                     0);
    expect_output("status=75");
    assert_int_equal(run("grep stopped ps.log"), 0);
    assert_int_equal(count("stopped on request"), 1);
    assert_int_equal(run("%s -np 2 %s train ps.ini --resume auto --set "
                         "train.epochs=1 --set parallel.servers=colocated "
                         "> ps2.log 2>&1; tail -1 ps2.log",
                         mpirun, bin),
                     0);
    expect_output("trained");
    assert_int_equal(run("grep resuming ps2.log"), 0);
    expect_output("resuming from psrun/checkpoints/ckpt-");
    /* Asynchronous too: the stop is agreed on a few steps late, every
     * role saves, 75. */
    assert_int_equal(run("sh -c '%s -np 3 %s train ps.ini --set "
                         "parallel.ps_mode=async --set run.dir=psasync > "
                         "psa.log 2>&1 & p=$!; %s; kill -USR1 $p; wait $p; "
                         "echo status=$?'",
                         mpirun, bin, wait_epoch("psa.log")),
                     0);
    expect_output("status=75");
    assert_int_equal(run("grep stopped psa.log"), 0);
    assert_int_equal(count("stopped on request"), 1);
    assert_int_equal(
        run("sh -c 'rank() { for q in $(pgrep -f \"[t]rain ps.ini\"); "
            "do grep -qz \"^OMPI_COMM_WORLD_RANK=$1$\" /proc/$q/environ "
            "2>/dev/null && echo $q; done; }; "
            "%s -np 3 %s train ps.ini --set run.dir=psrun3 > ps3.log 2>&1 "
            "& p=$!; %s; kill -STOP $(rank 2) && echo stopped; "
            "wait $p; echo status=$?; sleep 1; "
            "[ -z \"$(rank \"[0-9]*\")\" ] && echo all-gone'",
            mpirun, bin, wait_epoch("ps3.log")),
        0);
    expect_output("status=4");
    expect_output("all-gone");
    assert_int_equal(run("grep error: ps3.log"), 0);
    assert_int_equal(count("; no answer from rank 2 (stopped"), 2);
}

/* kill -9 of a search during its second trial, then the same command:
 * no finished trial runs again, the interrupted one resumes from its
 * checkpoint, and every trial is finished exactly once. */
static void test_search_survives_kill(void **s)
{
    write_text("ks.ini", "[run]\ndir = ksrun\nprogress = none\n"
                         "[data]\ntrain = d.h5\nvalidation = 0.2\n"
                         "[train]\nepochs = 40000\nbatch = 16\n"
                         "[optimizer]\nlr = 0.001\n"
                         "[checkpoint]\nevery_steps = 20000\n"
                         "[flatten]\n[dense]\nunits = 3\n[softmax]\n"
                         "[search]\noptimizer.lr = grid(0.001, 0.002, "
                         "0.003)\n");
    assert_int_equal(
        run("sh -c '%s search ks.ini > ks.log 2>&1 & p=$!; for i in "
            "$(seq 1200); do test -e ksrun/trial-0001/checkpoints/latest "
            "&& break; sleep 0.05; done; kill -9 $p; wait $p; "
            "echo status=$?'",
            bin),
        0);
    expect_output("status=137");
    assert_int_equal(run("grep -c finished ksrun/journal.jsonl"), 0);
    expect_output("1\n"); /* trial 0 only */
    assert_int_equal(run("%s search --status ksrun", bin), 0);
    expect_output("search in ksrun: 3 trials: 1 finished, 0 failed, 1 "
                  "running or interrupted, 1 not started; best val_accuracy");
    assert_int_equal(run("%s search ks.ini > ks2.log 2>&1; echo st=$?; "
                         "cat ks2.log",
                         bin),
                     0);
    expect_output("st=0");
    expect_output("search: 3 of 3 trials have a result, 0 failed");
    expect_output("trial 1 (optimizer.lr=0.002)");
    assert_int_equal(count("trial 0 (optimizer.lr=0.001)"), 0);
    for (int t = 0; t < 3; t++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\"finished\",\"trial\":%d,", t);
        assert_int_equal(run("cat ksrun/journal.jsonl"), 0);
        assert_int_equal(count(pat), 1);
    }
    assert_int_equal(run("grep -c 'resuming from' "
                         "ksrun/trial-0001/train.log"),
                     0);
    assert_int_equal(run("%s search --status ksrun", bin), 0);
    expect_output("3 trials: 3 finished, 0 failed, 0 running or "
                  "interrupted, 0 not started; best val_accuracy");
    assert_int_equal(run("%s search --status nowhere", bin), 1);
    expect_output("nowhere/journal.jsonl: no search journal here");
    assert_int_equal(run("%s train ksrun/best.ini > /dev/null && echo ok",
                         bin),
                     0);
}

/* kill -9 of an asha search as its first promotion is journaled (the
 * search then has 30000 epochs to go: ~1 s on the 2-core EPYC with
 * AVX-512, where 3000 went by before the kill landed), then the
 * same command: the promotions, in order, and the winner are those of
 * the same search run without a kill (one rank: one group, so the order
 * of results is fixed), and each trial's rung has one result. */
static void test_asha_survives_kill(void **s)
{
    const char *ini = "[run]\nprogress = none\n"
                      "[data]\ntrain = d.h5\nvalidation = 0.2\n"
                      "[train]\nepochs = 40000\nbatch = 16\n"
                      "[optimizer]\nlr = 0.001\nschedule = cosine\n"
                      "[checkpoint]\nevery_steps = 20000\n"
                      "[flatten]\n[dense]\nunits = 3\n[softmax]\n"
                      "[search]\nmethod = asha\nmin_epochs = 10000\neta = 2\n"
                      "optimizer.lr = grid(0.001, 0.002, 0.004, 0.008)\n";
    write_text("as.ini", ini);
    assert_int_equal(run("%s search as.ini --set run.dir=aw > aw.log 2>&1",
                         bin),
                     0);
    assert_int_equal(
        run("sh -c '%s search as.ini --set run.dir=ak > ak.log 2>&1 & p=$!; "
            "for i in $(seq 1200); do grep -q promoted ak/journal.jsonl "
            "2>/dev/null && break; sleep 0.05; done; kill -9 $p; "
            "wait $p; echo status=$?'",
            bin),
        0);
    expect_output("status=137");
    assert_int_equal(run("%s search as.ini --set run.dir=ak > ak2.log 2>&1",
                         bin),
                     0);
    const char *promos = "grep -o '\"promoted\",\"trial\":[0-9]*,\"rung\":[0-9]' "
                         "%s/journal.jsonl | tr '\\n' ' '";
    static char whole[4096];
    assert_int_equal(run(promos, "aw"), 0);
    snprintf(whole, sizeof whole, "%.4000s", out);
    assert_true(strlen(whole) > 20); /* some promotions to compare */
    assert_int_equal(run(promos, "ak"), 0);
    assert_string_equal(out, whole);
    assert_int_equal(run("grep '^best' aw.log; grep '^best' ak2.log"), 0);
    assert_int_equal(count("best: trial "), 2);
    char *second = strchr(out, '\n');
    assert_non_null(second);
    assert_int_equal(strncmp(out, second + 1, 14), 0);
    /* one result per trial and rung, in the killed search too */
    assert_int_equal(run("grep finished ak/journal.jsonl | grep -oE "
                         "'\"trial\":[0-9]+,(\"rung\":[0-9]+)?' | sort | "
                         "uniq -d | wc -l"),
                     0);
    assert_int_equal(atoi(out), 0);
}

/* SIGUSR1 to mpirun running a search (2 ranks, a trial each): every
 * running trial saves, the search exits 75; the same command resumes
 * them and finishes every trial once. A trial is 100000 epochs of a
 * tiny model, ~5 s on the 2-core EPYC with AVX-512 (20000, 1 s, finished
 * before the signal there), and the signal goes as both have begun. */
static void test_search_signal_saves(void **s)
{
    write_text("ss.ini", "[run]\ndir = ssrun\nprogress = none\n"
                         "[data]\ntrain = d.h5\nvalidation = 0.2\n"
                         "[train]\nepochs = 100000\nbatch = 16\n"
                         "[optimizer]\nlr = 0.001\n"
                         "[flatten]\n[dense]\nunits = 3\n[softmax]\n"
                         "[search]\noptimizer.lr = grid(0.001, 0.002, "
                         "0.003)\n");
    assert_int_equal(
        run("sh -c '%s -np 2 %s search ss.ini > ss.log 2>&1 & p=$!; for i "
            "in $(seq 1200); do n=$(ls ssrun/trial-000[01]/metrics.jsonl "
            "2>/dev/null | wc -l); [ \"$n\" = 2 ] && break; sleep 0.05; "
            "done; sleep 0.2; kill -USR1 $p; wait $p; echo status=$?'",
            mpirun, bin),
        0);
    expect_output("status=75");
    /* Each running trial saved at the stop (its last line). */
    assert_int_equal(run("tail -qn1 ssrun/trial-0000/train.log "
                         "ssrun/trial-0001/train.log"),
                     0);
    assert_int_equal(count("checkpoint: step"), 2);
    assert_int_equal(run("%s -np 2 %s search ss.ini > ss2.log 2>&1; "
                         "echo st=$?; grep -c resuming "
                         "ssrun/trial-0000/train.log; grep -c finished "
                         "ssrun/journal.jsonl",
                         mpirun, bin),
                     0);
    expect_output("st=0\n1\n3\n");
}

/* A full disk while saving: a clear error, the older checkpoint intact,
 * nothing half-written left. Needs root to mount a small tmpfs. */
static void test_disk_full_keeps_older_checkpoint(void **s)
{
    if (run("mkdir -p small && mount -t tmpfs -o size=100k tmpfs small") !=
        0)
        skip();
    int st = run("%s train good.ini --set run.dir=dfrun --set "
                 "checkpoint.dir=small --set checkpoint.every_steps=1",
                 bin);
    char listing[4096];
    run("ls small; %s inspect small/$(cat small/latest)", bin);
    memcpy(listing, out, sizeof listing - 1);
    listing[sizeof listing - 1] = '\0';
    run("umount small");
    assert_int_equal(st, 1);
    if (!strstr(listing, "ckpt-") || strstr(listing, ".partial") ||
        !strstr(listing, "step "))
        fail_msg("after a full disk:\n%s", listing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_saves_and_resume_finishes),
        cmocka_unit_test(test_stopped_rank_meets_the_deadline),
        cmocka_unit_test(test_parameter_server_faults),
        cmocka_unit_test(test_search_survives_kill),
        cmocka_unit_test(test_asha_survives_kill),
        cmocka_unit_test(test_search_signal_saves),
        cmocka_unit_test(test_disk_full_keeps_older_checkpoint),
    };
    return cmocka_run_group_tests(tests, cli_setup, cli_teardown);
}
