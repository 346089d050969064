/* Dataset files: the IDX converter, loading, gathering, and bad files. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "mpitrain/core.h"
#include "mpitrain/data.h"

static char dir[64];

static const char *in_dir(const char *name)
{
    static char buf[4][128];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int setup(void **s)
{
    snprintf(dir, sizeof dir, "/tmp/mt_test_data_%d", (int)getpid());
    return mkdir(dir, 0755);
}

static int teardown(void **s)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX file of unsigned bytes, gzipped if gz. */
static void write_idx(const char *path, int gz, int ndim, const uint32_t *dims,
                      const uint8_t *data, size_t n)
{
    uint8_t hdr[4 + 16] = {0, 0, 8, (uint8_t)ndim};
    for (int i = 0; i < ndim; i++)
        put_be32(hdr + 4 + 4 * i, dims[i]);
    gzFile f = gzopen(path, gz ? "wb" : "wbT");
    assert_non_null(f);
    gzwrite(f, hdr, (unsigned)(4 + 4 * ndim));
    gzwrite(f, data, (unsigned)n);
    gzclose(f);
}

enum { N = 7, H = 3, W = 2 };

static void make_idx_pair(int gz, uint8_t *pix, uint8_t *lab)
{
    for (size_t i = 0; i < N * H * W; i++)
        pix[i] = (uint8_t)(i * 37 % 256);
    for (size_t i = 0; i < N; i++)
        lab[i] = (uint8_t)(i % 3);
    uint32_t xd[3] = {N, H, W}, yd[1] = {N};
    write_idx(in_dir("img.idx"), gz, 3, xd, pix, N * H * W);
    write_idx(in_dir("lab.idx"), gz, 1, yd, lab, N);
}

static void test_convert_and_load(void **s)
{
    for (int gz = 0; gz < 2; gz++) {
        uint8_t pix[N * H * W], lab[N];
        make_idx_pair(gz, pix, lab);
        char err[MT_ERR_LEN] = "";
        int rc = mt_idx_convert(in_dir("img.idx"), in_dir("lab.idx"),
                                in_dir("d.h5"), "a,b,c", err);
        if (rc)
            fail_msg("%s", err);
        assert_int_equal(access(in_dir("d.h5.partial"), F_OK), -1);
        mt_dataset ds;
        assert_int_equal(mt_dataset_load(&ds, in_dir("d.h5"), err), MT_OK);
        assert_int_equal(ds.n, N);
        assert_int_equal(ds.shape.c, 1);
        assert_int_equal(ds.shape.h, H);
        assert_int_equal(ds.shape.w, W);
        assert_memory_equal(ds.x8, pix, sizeof pix);
        assert_int_equal(ds.n_classes, 3);
        assert_string_equal(ds.class_names[2], "c");
        for (size_t i = 0; i < N; i++)
            assert_int_equal(ds.labels[i], lab[i]);

        /* Gather scales by 1/255 and one-hots labels for K outputs. */
        size_t idx[2] = {5, 1};
        float x[2 * H * W], t[2 * 3];
        int32_t y[2];
        mt_dataset_gather(&ds, idx, 2, x, y, t, 3);
        assert_true(x[0] == pix[5 * H * W] / 255.0f);
        assert_int_equal(y[0], 2);
        assert_true(t[0] == 0.0f && t[2] == 1.0f && t[4] == 1.0f);
        mt_dataset_free(&ds);
        mt_dataset_free(&ds); /* twice is safe */
    }
}

static void expect_load_error(const char *path, const char *frag)
{
    mt_dataset ds;
    char err[MT_ERR_LEN] = "";
    assert_int_not_equal(mt_dataset_load(&ds, path, err), MT_OK);
    if (!strstr(err, frag) || !strstr(err, path))
        fail_msg("error '%s' lacks '%s' or the path", err, frag);
}

static void test_missing_and_not_hdf5(void **s)
{
    expect_load_error(in_dir("nope.h5"), "No such file");
    FILE *f = fopen(in_dir("text.h5"), "w");
    fputs("not hdf5\n", f);
    fclose(f);
    expect_load_error(in_dir("text.h5"), "not a readable HDF5 file");
}

/* An HDF5 file with one int32 dataset `name` of n values. */
static void write_h5_ints(const char *path, const char *name,
                          const int32_t *v, hsize_t n, double n_classes)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_NATIVE_INT32, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (n_classes > 0) {
        hid_t as = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(d, "n_classes", H5T_NATIVE_DOUBLE, as,
                             H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_DOUBLE, &n_classes);
        H5Aclose(a);
        H5Sclose(as);
    }
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
}

static void test_no_x(void **s)
{
    int32_t y[3] = {0, 1, 2};
    write_h5_ints(in_dir("nox.h5"), "/y", y, 3, 0);
    expect_load_error(in_dir("nox.h5"), "no dataset /x");
}

static void test_labels_out_of_range(void **s)
{
    uint8_t x[4 * 2] = {0};
    int32_t y[4] = {0, 1, 12, 1};
    char err[MT_ERR_LEN] = "";
    /* The writer records n_classes = 10; label 12 breaks it. */
    assert_int_equal(mt_dataset_write(in_dir("bad.h5"), 4,
                                      (mt_shape){2, 1, 1}, x, NULL, y, 10,
                                      NULL, err),
                     MT_OK);
    expect_load_error(in_dir("bad.h5"), "/y[2] = 12 is out of range");
    y[2] = -1;
    assert_int_equal(mt_dataset_write(in_dir("neg.h5"), 4,
                                      (mt_shape){2, 1, 1}, x, NULL, y, 10,
                                      NULL, err),
                     MT_OK);
    expect_load_error(in_dir("neg.h5"), "/y[2] = -1 is negative");

    /* Without n_classes, classes are max + 1; a model with fewer outputs
     * is refused by the check. */
    y[2] = 12;
    write_h5_ints(in_dir("y_only.h5"), "/y", y, 4, 0);
    mt_dataset ds;
    assert_int_equal(mt_dataset_write(in_dir("ok.h5"), 4, (mt_shape){2, 1, 1},
                                      x, NULL, (int32_t[]){0, 1, 12, 1}, 13,
                                      NULL, err),
                     MT_OK);
    assert_int_equal(mt_dataset_load(&ds, in_dir("ok.h5"), err), MT_OK);
    assert_int_equal(mt_dataset_check(&ds, (mt_shape){2, 1, 1}, 10,
                                      MT_LOSS_SOFTMAX_CE, 1, err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "13 classes but the model has 10 outputs"));
    assert_int_equal(mt_dataset_check(&ds, (mt_shape){1, 2, 2}, 13,
                                      MT_LOSS_SOFTMAX_CE, 1, err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "samples are 2x1x1"));
    mt_dataset_free(&ds);
}

static void test_non_finite_input(void **s)
{
    float x[3 * 2] = {0, 1, 2, 3, NAN, 5};
    int32_t y[3] = {0, 1, 0};
    char err[MT_ERR_LEN] = "";
    assert_int_equal(mt_dataset_write(in_dir("nan.h5"), 3, (mt_shape){2, 1, 1},
                                      NULL, x, y, 2, NULL, err),
                     MT_OK);
    expect_load_error(in_dir("nan.h5"), "/x sample 2, element 0 is NaN");
}

static void test_augmentation(void **s)
{
    /* 1 x 3 x 3: 1 2 3 / 4 5 6 / 7 8 9 */
    float x[9], tmp[9];
    mt_shape sh = {1, 3, 3};
    for (int i = 0; i < 9; i++)
        x[i] = (float)(i + 1);
    mt_augment_image(x, sh, 1, 0, 0, tmp); /* right by one */
    const float right[9] = {0, 1, 2, 0, 4, 5, 0, 7, 8};
    assert_memory_equal(x, right, sizeof x);
    for (int i = 0; i < 9; i++)
        x[i] = (float)(i + 1);
    mt_augment_image(x, sh, 0, -1, 1, tmp); /* up by one, mirrored */
    const float up_flip[9] = {6, 5, 4, 9, 8, 7, 0, 0, 0};
    assert_memory_equal(x, up_flip, sizeof x);
    int seen_flip = 0, seen_shift[5] = {0};
    for (uint64_t row = 0; row < 200; row++) {
        int dx, dy, f, dx2, dy2, f2;
        mt_augment_draw(7, 3, row, 2, 1, &dx, &dy, &f);
        mt_augment_draw(7, 3, row, 2, 1, &dx2, &dy2, &f2);
        assert_true(dx == dx2 && dy == dy2 && f == f2); /* a pure function */
        assert_true(dx >= -2 && dx <= 2 && dy >= -2 && dy <= 2);
        seen_shift[dx + 2]++;
        seen_flip += f;
    }
    for (int i = 0; i < 5; i++)
        assert_true(seen_shift[i] > 10);
    assert_true(seen_flip > 60 && seen_flip < 140);
}

/* Class counts of an epoch's draw, and how often each position came. */
static void tally(const size_t *out, size_t n_out, const int32_t *lab,
                  size_t *per_class, size_t *per_pos)
{
    for (size_t i = 0; i < n_out; i++) {
        per_class[lab[out[i]]]++;
        per_pos[out[i]]++;
    }
}

/* Labels 0 x7, 1 x2, 3 x1, class 2 absent (K = 4). */
static const int32_t imbalanced[10] = {0, 1, 0, 0, 3, 0, 1, 0, 0, 0};

static void test_sampler_none_is_the_shuffle(void **s)
{
    mt_sampler sm;
    char err[MT_ERR_LEN];
    assert_int_equal(mt_sampler_init(&sm, MT_SAMPLING_NONE, NULL, 10, 0, err),
                     MT_OK);
    assert_int_equal(sm.n_epoch, 10);
    size_t out[10], want[10];
    mt_sampler_epoch(&sm, 9, 3, out);
    mt_rng_permutation(want, 10, 9, MT_RNG_SHUFFLE, 3);
    assert_memory_equal(out, want, sizeof want);
    mt_sampler_free(&sm);
}

/* Oversampling: every present class drawn 7 times; a class of 2 comes
 * 3 or 4 times per sample, a class of 1 comes 7 times; the same seed and
 * epoch give the same draw, another epoch another order. */
static void test_sampler_oversample(void **s)
{
    mt_sampler sm, again;
    char err[MT_ERR_LEN];
    assert_int_equal(mt_sampler_init(&sm, MT_SAMPLING_OVER, imbalanced, 10,
                                     4, err),
                     MT_OK);
    assert_int_equal(mt_sampler_init(&again, MT_SAMPLING_OVER, imbalanced,
                                     10, 4, err),
                     MT_OK);
    assert_int_equal(sm.n_epoch, 21);
    size_t out[21], out2[21], out3[21];
    for (uint64_t e = 0; e < 5; e++) {
        size_t per_class[4] = {0}, per_pos[10] = {0};
        mt_sampler_epoch(&sm, 1, e, out);
        tally(out, 21, imbalanced, per_class, per_pos);
        assert_int_equal(per_class[0], 7);
        assert_int_equal(per_class[1], 7);
        assert_int_equal(per_class[2], 0);
        assert_int_equal(per_class[3], 7);
        for (size_t i = 0; i < 10; i++) {
            if (imbalanced[i] == 0)
                assert_int_equal(per_pos[i], 1);
            else if (imbalanced[i] == 1)
                assert_true(per_pos[i] == 3 || per_pos[i] == 4);
            else
                assert_int_equal(per_pos[i], 7);
        }
        mt_sampler_epoch(&again, 1, e, out2);
        assert_memory_equal(out, out2, sizeof out);
    }
    mt_sampler_epoch(&sm, 1, 5, out3);
    assert_memory_not_equal(out, out3, sizeof out);
    mt_sampler_free(&sm);
    mt_sampler_free(&again);
}

/* Undersampling: one of each present class per epoch; over epochs the
 * majority class contributes different samples. */
static void test_sampler_undersample(void **s)
{
    mt_sampler sm;
    char err[MT_ERR_LEN];
    assert_int_equal(mt_sampler_init(&sm, MT_SAMPLING_UNDER, imbalanced, 10,
                                     4, err),
                     MT_OK);
    assert_int_equal(sm.n_epoch, 3);
    size_t seen[10] = {0};
    for (uint64_t e = 0; e < 20; e++) {
        size_t out[3], per_class[4] = {0};
        mt_sampler_epoch(&sm, 2, e, out);
        tally(out, 3, imbalanced, per_class, seen);
        assert_int_equal(per_class[0], 1);
        assert_int_equal(per_class[1], 1);
        assert_int_equal(per_class[3], 1);
    }
    size_t majority_used = 0;
    for (size_t i = 0; i < 10; i++)
        majority_used += imbalanced[i] == 0 && seen[i] > 0;
    assert_true(majority_used >= 4); /* of 7, over 20 epochs */
    mt_sampler_free(&sm);
    const int32_t bad[3] = {0, 5, 1};
    assert_int_equal(mt_sampler_init(&sm, MT_SAMPLING_OVER, bad, 3, 2, err),
                     MT_EINVAL);
    assert_non_null(strstr(err, "label 5 of sample 1"));
}

static void test_bad_idx(void **s)
{
    uint8_t pix[N * H * W], lab[N];
    make_idx_pair(1, pix, lab);
    char err[MT_ERR_LEN] = "";
    /* Labels for fewer images than there are. */
    uint32_t yd[1] = {N - 1};
    write_idx(in_dir("lab5.idx"), 1, 1, yd, lab, N - 1);
    assert_int_equal(mt_idx_convert(in_dir("img.idx"), in_dir("lab5.idx"),
                                    in_dir("o.h5"), NULL, err),
                     MT_EFORMAT);
    assert_non_null(strstr(err, "labels for"));
    /* Truncated data. */
    uint32_t xd[3] = {N, H, W};
    write_idx(in_dir("short.idx"), 0, 3, xd, pix, 10);
    assert_int_equal(mt_idx_convert(in_dir("short.idx"), in_dir("lab.idx"),
                                    in_dir("o.h5"), NULL, err),
                     MT_EFORMAT);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(access(in_dir("o.h5"), F_OK), -1);
    assert_int_equal(access(in_dir("o.h5.partial"), F_OK), -1);
    /* Unwritable destination. */
    assert_int_equal(mt_idx_convert(in_dir("img.idx"), in_dir("lab.idx"),
                                    "/nonexistent/dir/o.h5", NULL, err),
                     MT_EIO);
    assert_non_null(strstr(err, "/nonexistent/dir/o.h5"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_and_load),
        cmocka_unit_test(test_missing_and_not_hdf5),
        cmocka_unit_test(test_no_x),
        cmocka_unit_test(test_labels_out_of_range),
        cmocka_unit_test(test_non_finite_input),
        cmocka_unit_test(test_augmentation),
        cmocka_unit_test(test_bad_idx),
        cmocka_unit_test(test_sampler_none_is_the_shuffle),
        cmocka_unit_test(test_sampler_oversample),
        cmocka_unit_test(test_sampler_undersample),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
