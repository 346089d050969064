#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "mpitrain/checkpoint.h"
#include "mpitrain/core.h"

static const char usage[] =
    "usage: mpitrain inspect CHECKPOINT [--json]\n"
    "\n"
    "Checks a checkpoint (format, version, complete mark, every checksum)\n"
    "and prints its step, epoch, every tensor with its shape, the config\n"
    "it was trained with and its metrics log; --json as one object.\n";

int mt_cli_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s", usage);
            return MT_EXIT_OK;
        }
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else
            path = NULL, i = argc;
    }
    if (!path) {
        fprintf(stderr, "%s", usage);
        return MT_EXIT_USAGE;
    }
    char err[MT_ERR_LEN] = "";
    int rc = mt_ckpt_inspect(path, json, err);
    return rc ? mt_cli_fail(0, rc, err) : MT_EXIT_OK;
}
