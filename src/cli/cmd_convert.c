#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "mpitrain/core.h"
#include "mpitrain/data.h"
#include "mpitrain/io.h"

static const char usage[] =
    "usage: mpitrain convert idx IMAGES LABELS OUT.h5 [--class-names a,b,...]\n"
    "       mpitrain convert fashion-mnist OUTDIR [SRCDIR]\n"
    "\n"
    "idx: turns IDX (MNIST format, gzipped or not) images and labels into\n"
    "an mpitrain dataset file (/x uint8 (N, 1, H, W), /y int32).\n"
    "fashion-mnist: converts the Debian package dataset-fashion-mnist\n"
    "(SRCDIR, default " MT_FASHION_DIR ") into OUTDIR/train.h5 and\n"
    "OUTDIR/t10k.h5, with the class names.\n";

static const char fashion_classes[] =
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,"
    "Ankle boot";

static int fashion(const char *outdir, const char *src, char *err)
{
    static const char *const parts[] = {"train", "t10k"};
    int rc = mt_mkdirs(outdir, err);
    for (int i = 0; rc == MT_OK && i < 2; i++) {
        char img[4096], lab[4096], out[4096];
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", src, parts[i]);
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", src, parts[i]);
        snprintf(out, sizeof out, "%s/%s.h5", outdir, parts[i]);
        rc = mt_idx_convert(img, lab, out, fashion_classes, err);
        if (rc == MT_OK)
            printf("wrote %s\n", out);
    }
    return rc;
}

int mt_cli_convert(int argc, char **argv)
{
    char err[MT_ERR_LEN] = "";
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("%s", usage);
        return MT_EXIT_OK;
    }
    int rc;
    if (argc >= 5 && strcmp(argv[1], "idx") == 0) {
        const char *names = NULL;
        if (argc == 7 && strcmp(argv[5], "--class-names") == 0)
            names = argv[6];
        else if (argc != 5)
            goto bad;
        rc = mt_idx_convert(argv[2], argv[3], argv[4], names, err);
        if (rc == MT_OK)
            printf("wrote %s\n", argv[4]);
    } else if ((argc == 3 || argc == 4) &&
               strcmp(argv[1], "fashion-mnist") == 0) {
        rc = fashion(argv[2], argc == 4 ? argv[3] : MT_FASHION_DIR, err);
    } else {
        goto bad;
    }
    return rc ? mt_cli_fail(0, rc, err) : MT_EXIT_OK;
bad:
    fprintf(stderr, "%s", usage);
    return MT_EXIT_USAGE;
}
