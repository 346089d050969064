/* Our ring allreduce against MPI_Allreduce (run at 1, 2, 3 and 4 ranks):
 * sizes 0, 1, P - 1, P, P + 1, primes and a large buffer, segments from one
 * element up, blocking and polled progress, and bf16 payloads. */
#include <math.h>
#include <mpi.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/sync.h"

static int rank, size;

static void fill(float *v, size_t n, int who)
{
    for (size_t i = 0; i < n; i++)
        v[i] = mt_rng_normal(17, 60, (uint64_t)who, i) * 3.0f;
}

/* Every rank must hold the very same floats. */
static void expect_identical_on_all_ranks(const float *v, size_t n)
{
    float *root = malloc((n ? n : 1) * sizeof *root);
    memcpy(root, v, n * sizeof *v);
    MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    int same = memcmp(root, v, n * sizeof *v) == 0, all;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    free(root);
    assert_true(all);
}

/* Ring sum of n floats with segment seg_bytes vs MPI_Allreduce. */
static void check(size_t n, size_t seg_bytes, mt_compress c, int polled,
                  double tol)
{
    float *got = malloc((n + 1) * sizeof *got);
    float *want = malloc((n + 1) * sizeof *want);
    fill(got, n, rank);
    memcpy(want, got, n * sizeof *got);
    MPI_Allreduce(MPI_IN_PLACE, want, (int)n, MPI_FLOAT, MPI_SUM,
                  MPI_COMM_WORLD);
    mt_ring r;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_ring_init(&r, MPI_COMM_WORLD, n, seg_bytes, c, 7,
                                  err),
                     MT_OK);
    if (polled) {
        assert_int_equal(mt_ring_start(&r, got, n, err), MT_OK);
        int done = 0;
        while (!done)
            assert_int_equal(mt_ring_test(&r, &done, err), MT_OK);
    } else {
        assert_int_equal(mt_ring_allreduce(&r, got, n, err), MT_OK);
    }
    mt_ring_free(&r);
    for (size_t i = 0; i < n; i++) {
        double scale = 3.0 * sqrt((double)size) + fabs(want[i]);
        if (fabs(got[i] - want[i]) > tol * scale)
            fail_msg("n=%zu seg=%zu element %zu: ring %g, MPI %g", n,
                     seg_bytes, i, (double)got[i], (double)want[i]);
    }
    expect_identical_on_all_ranks(got, n);
    free(got);
    free(want);
}

static void test_small_and_awkward_sizes(void **s)
{
    size_t P = (size_t)size;
    size_t sizes[] = {0, 1, 2, P - 1, P, P + 1, 2 * P + 1, 13, 97, 7919};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        check(sizes[i], 4, MT_COMPRESS_NONE, 0, 1e-6);      /* 1 per seg */
        check(sizes[i], 12, MT_COMPRESS_NONE, 1, 1e-6);     /* polled */
        check(sizes[i], 1 << 18, MT_COMPRESS_NONE, 0, 1e-6);
    }
}

/* From 3 ranks, below the small size MPI does the work (nonblocking when
 * polled, blocking in mt_ring_allreduce); at and above it the ring; all
 * give the MPI sum on every rank. */
static void test_small_buffers_go_to_mpi(void **s)
{
    for (int polled = 0; polled < 2; polled++)
        for (size_t n = 0; n < 40; n += 13) {
            float got[40], want[40];
            fill(got, n, rank);
            memcpy(want, got, n * sizeof *got);
            MPI_Allreduce(MPI_IN_PLACE, want, (int)n, MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD);
            mt_ring r;
            char err[MT_ERR_LEN] = "";
            assert_int_equal(mt_ring_init(&r, MPI_COMM_WORLD, 64, 8,
                                          MT_COMPRESS_BF16, 9, err),
                             MT_OK);
            mt_ring_set_small(&r, 27);
            int done = 0;
            if (polled) {
                assert_int_equal(mt_ring_start(&r, got, n, err), MT_OK);
                /* float32 below 27, bf16 on the ring from 27 on */
                assert_int_equal(r.small_on, n < 27 && size > 2);
                while (!done)
                    assert_int_equal(mt_ring_test(&r, &done, err), MT_OK);
            } else {
                assert_int_equal(mt_ring_allreduce(&r, got, n, err), MT_OK);
            }
            for (size_t i = 0; i < n; i++)
                if (fabs(got[i] - want[i]) >
                    (n < 27 && size > 2 ? 1e-6 : 0.01) *
                        (1.0 + fabs(want[i])))
                    fail_msg("n=%zu element %zu: %g, MPI %g", n, i,
                             (double)got[i], (double)want[i]);
            expect_identical_on_all_ranks(got, n);
            mt_ring_free(&r);
        }
}

static void test_large_buffer_streams(void **s)
{
    check(1000003, 1 << 16, MT_COMPRESS_NONE, 0, 1e-6);
    check(1000003, 1 << 16, MT_COMPRESS_NONE, 1, 1e-6);
}

static void test_bf16_payload(void **s)
{
    /* bf16 keeps 8 bits of mantissa: each of P - 1 hops may lose 2^-9. */
    double tol = (double)size * 0.004;
    check(0, 4, MT_COMPRESS_BF16, 0, tol);
    check(5, 4, MT_COMPRESS_BF16, 0, tol);
    check(7919, 64, MT_COMPRESS_BF16, 1, tol);
    check(100003, 1 << 14, MT_COMPRESS_BF16, 0, tol);
}

static void test_bf16_rounding(void **s)
{
    assert_int_equal(mt_bf16_from_float(1.0f), 0x3f80);
    assert_true(mt_bf16_to_float(mt_bf16_from_float(1.0f)) == 1.0f);
    /* 1 + 2^-8 is halfway between bf16 neighbours: ties to even (down). */
    assert_true(mt_bf16_to_float(mt_bf16_from_float(1.00390625f)) == 1.0f);
    /* 1 + 3 * 2^-8 rounds up to 1 + 2^-6. */
    assert_true(mt_bf16_to_float(mt_bf16_from_float(1.01171875f)) ==
                1.015625f);
    assert_true(isnan(mt_bf16_to_float(mt_bf16_from_float(NAN))));
    assert_true(isinf(mt_bf16_to_float(mt_bf16_from_float(INFINITY))));
}

/* The halves alone: after MT_RING_SCATTER each rank's owned block holds
 * what the whole allreduce leaves there (the same floats); the blocks of
 * all ranks cover the buffer once (or each rank owns it whole where it
 * went to MPI); MT_RING_GATHER then passes each owner's block to every
 * rank as it is, in float32 even with bf16 compression. */
static void phases(size_t n, size_t seg_bytes, mt_compress c, size_t small)
{
    float *v = malloc((n + 1) * sizeof *v), *all = malloc((n + 1) * sizeof *v);
    mt_ring r;
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_ring_init(&r, MPI_COMM_WORLD, n, seg_bytes, c, 9,
                                  err),
                     MT_OK);
    mt_ring_set_small(&r, small);
    fill(v, n, rank);
    fill(all, n, rank);
    assert_int_equal(mt_ring_allreduce(&r, all, n, err), MT_OK);
    assert_int_equal(mt_ring_start_phase(&r, v, n, MT_RING_SCATTER, err),
                     MT_OK);
    int done = 0;
    while (!done)
        assert_int_equal(mt_ring_test(&r, &done, err), MT_OK);
    size_t lo, hi, covered = 0;
    int whole;
    for (int j = 0; j < size; j++) {
        mt_ring_owned(&r, n, j, &lo, &hi, &whole);
        covered += hi - lo;
    }
    mt_ring_owned(&r, n, rank, &lo, &hi, &whole);
    assert_int_equal(covered, whole ? n * (size_t)size : n);
    /* bf16 (2 ranks on): the whole allreduce rounds the owner's block before
     * passing it on; the scatter alone leaves the float sum. */
    for (size_t i = lo; i < hi; i++) {
        float want = c == MT_COMPRESS_BF16 && !whole && size > 1
                         ? mt_bf16_to_float(mt_bf16_from_float(v[i]))
                         : v[i];
        if (want != all[i])
            fail_msg("n=%zu element %zu of the owned block: %g after the "
                     "scatter, %g after the allreduce",
                     n, i, (double)v[i], (double)all[i]);
    }
    /* Owners' blocks made distinct (a parameter update), then gathered. */
    for (size_t i = lo; i < hi; i++)
        v[i] = whole ? 0.1f * (float)i : 1.0f + 1e-6f * (float)(i + 1);
    assert_int_equal(mt_ring_start_phase(&r, v, n, MT_RING_GATHER, err),
                     MT_OK);
    assert_int_equal(mt_ring_wait(&r, err), MT_OK);
    for (size_t i = 0; i < n; i++) {
        float want = whole ? 0.1f * (float)i : 1.0f + 1e-6f * (float)(i + 1);
        if (v[i] != want)
            fail_msg("n=%zu element %zu after the gather: %.9g, not %.9g",
                     n, i, (double)v[i], (double)want);
    }
    mt_ring_free(&r);
    free(v);
    free(all);
}

static void test_scatter_and_gather_alone(void **s)
{
    phases(0, 4, MT_COMPRESS_NONE, 0);
    phases(1, 4, MT_COMPRESS_NONE, 0);
    phases(7, 8, MT_COMPRESS_NONE, 0);
    phases(1001, 64, MT_COMPRESS_NONE, 0);
    phases(1001, 64, MT_COMPRESS_BF16, 0);
    phases(100003, 1 << 14, MT_COMPRESS_NONE, 0);
    /* handed to MPI from 3 ranks: every rank owns it whole */
    phases(1001, 64, MT_COMPRESS_NONE, 2000);
}

static void test_reuse_and_oversize(void **s)
{
    mt_ring r;
    char err[MT_ERR_LEN] = "";
    float v[64];
    assert_int_equal(mt_ring_init(&r, MPI_COMM_WORLD, 64, 32,
                                  MT_COMPRESS_NONE, 3, err),
                     MT_OK);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 64; i++)
            v[i] = (float)(rank + i);
        assert_int_equal(mt_ring_allreduce(&r, v, 64, err), MT_OK);
        for (int i = 0; i < 64; i++)
            assert_true(v[i] == (float)(size * (size - 1) / 2 + size * i));
    }
    float big[200];
    assert_int_equal(mt_ring_start(&r, big, 200, err), MT_EINVAL);
    mt_ring_free(&r);
    mt_ring_free(&r);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_rounding),
        cmocka_unit_test(test_small_and_awkward_sizes),
        cmocka_unit_test(test_small_buffers_go_to_mpi),
        cmocka_unit_test(test_large_buffer_streams),
        cmocka_unit_test(test_bf16_payload),
        cmocka_unit_test(test_reuse_and_oversize),
        cmocka_unit_test(test_scatter_and_gather_alone),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed ? 1 : 0;
}
