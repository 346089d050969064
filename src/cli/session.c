/* What eval, predict and explain share: options, the config, the data and
 * the weights, and, for a pipeline's config, the stages (cli.h). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mpitrain/dist.h"
#include "mpitrain/io.h"
#include "mpitrain/train.h"

void mt_cli_session_free(mt_cli_session *s)
{
    for (size_t i = 0; i < s->n_models; i++)
        mt_model_free(&s->models[i]);
    free(s->list);
    mt_dataset_free(&s->data);
    mt_plan_free(&s->plan);
    mt_config_free(&s->cfg);
}

const mt_pipe_stage *mt_cli_session_pipes(const mt_cli_session *s)
{
    return s->staged ? s->pipes : NULL;
}

int mt_cli_session_args(int argc, char **argv, const char *usage,
                        const char *allowed, int need_input, mt_cli_args *a,
                        int *st)
{
    *st = mt_cli_parse(argc, argv, usage, allowed, a);
    if (*st == 0 && (!a->weights || (need_input && !a->input))) {
        fprintf(stderr, "mpitrain %s: --weights FILE%s required\n", argv[0],
                need_input ? " and --input FILE are" : " is");
        *st = MT_EXIT_USAGE;
    }
    if (*st == 0)
        return 1;
    mt_cli_args_free(a);
    *st = *st < 0 ? MT_EXIT_OK : *st;
    return 0;
}

/* --weights: one file, FILE,FILE,..., or @LIST (one file a line, blank
 * lines skipped) into s->paths and s->n_models. */
static int weight_paths(mt_cli_session *s, const char *arg, int many)
{
    if (arg[0] == '@') {
        FILE *f = fopen(arg + 1, "r");
        size_t len = 0;
        if (!f || getdelim(&s->list, &len, '\0', f) < 0) {
            mt_seterr(s->err, "--weights %s: cannot read the list", arg);
            if (f)
                fclose(f);
            return MT_EIO;
        }
        fclose(f);
    } else if (!(s->list = strdup(arg))) {
        return MT_ENOMEM;
    }
    const char *seps = arg[0] == '@' ? "\n" : ",";
    char *save = NULL;
    for (char *p = strtok_r(s->list, seps, &save); p;
         p = strtok_r(NULL, seps, &save)) {
        if (s->n_models == MT_CLI_MAX_MEMBERS) {
            mt_seterr(s->err, "--weights: more than %d files",
                      MT_CLI_MAX_MEMBERS);
            return MT_EINVAL;
        }
        s->paths[s->n_models++] = p;
    }
    if (s->n_models == 0 || (s->n_models > 1 && !many)) {
        mt_seterr(s->err, "--weights %s: %s", arg,
                  s->n_models ? "an ensemble is for eval only"
                              : "no weights file");
        return MT_EINVAL;
    }
    return MT_OK;
}

/* The config, and with stages on several ranks their grid: every rank
 * alike, agreed before the grid's collectives. */
static int open_config(mt_cli_session *s, const mt_cli_args *a)
{
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int rc = mt_config_load(&s->cfg, a->config, a->sets, a->n_sets, s->err);
    rc = mt_dist_agree(MPI_COMM_WORLD, rc, s->err);
    s->staged = rc == MT_OK && s->cfg.stages > 1 && size > 1;
    if (s->staged)
        rc = mt_plan_init(&s->plan, &s->cfg, MPI_COMM_WORLD, s->err);
    return rc;
}

/* This rank's rows of the data file (with stages its replica's), or the
 * whole file. */
static int open_data(mt_cli_session *s, const char *path, int share)
{
    int rank = s->rank, size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (s->staged) {
        rank = s->plan.eval_rank;
        size = s->plan.eval_size;
    }
    if (share)
        return mt_dataset_load_share(&s->data, path, rank, size, 0, s->err);
    return mt_dataset_load(&s->data, path, s->err);
}

/* The models; with stages built without values and cut so that each
 * rank keeps (and later loads) only its stage's layers. */
static int open_models(mt_cli_session *s, size_t want)
{
    int rc = MT_OK;
    size_t n = 0;
    for (; rc == MT_OK && n < want; n += rc == MT_OK)
        rc = (s->staged ? mt_model_shape_from_config : mt_model_from_config)(
            &s->cfg, s->data.shape, s->cfg.batch, &s->models[n], s->err);
    s->n_models = n;
    if (!s->staged)
        return rc;
    rc = mt_dist_agree(MPI_COMM_WORLD, rc, s->err);
    if (rc == MT_OK) /* collective */
        rc = mt_pipe_infer_cut(&s->cfg, &s->plan, &s->models[0], &s->pipes[0],
                               s->err);
    for (size_t j = 1; rc == MT_OK && j < n; j++) {
        rc = mt_model_keep_layers(&s->models[j], s->plan.layer_lo,
                                  s->plan.layer_hi, s->err);
        s->pipes[j] = s->pipes[0];
        s->pipes[j].m = &s->models[j];
    }
    return rc;
}

int mt_cli_session_open(mt_cli_session *s, const mt_cli_args *a,
                        const char *data, int need_y, int share)
{
    memset(s, 0, sizeof *s);
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    int rc = open_config(s, a);
    /* From here every wait has the config's deadline (agreed: all or
     * none start it). */
    if (rc == MT_OK)
        rc = mt_cli_watchdog(s->cfg.deadline_s, s->err);
    if (rc == MT_OK && !data && !s->cfg.test[0]) {
        mt_seterr(s->err, "%s: no [data] test set; pass --data FILE",
                  a->config);
        rc = MT_EINVAL;
    }
    if (rc == MT_OK)
        rc = open_data(s, data ? data : s->cfg.test, share);
    if (rc == MT_OK) /* eval (need_y && share) alone takes an ensemble */
        rc = weight_paths(s, a->weights, need_y && share);
    if (s->staged) /* all, or none, go on to the cut's collectives */
        rc = mt_dist_agree(MPI_COMM_WORLD, rc, s->err);
    size_t want = s->n_models;
    s->n_models = 0; /* from here: the models built, to free */
    if (rc == MT_OK)
        rc = open_models(s, want);
    if (rc == MT_OK)
        rc = mt_dataset_check(&s->data, s->models[0].in,
                              mt_shape_size(mt_model_out(&s->models[0])),
                              (mt_loss_kind)s->cfg.loss, need_y, s->err);
    for (size_t i = 0; rc == MT_OK && i < s->n_models; i++)
        rc = mt_weights_load(&s->models[i], s->paths[i], s->err);
    return mt_dist_agree(MPI_COMM_WORLD, rc, s->err);
}
