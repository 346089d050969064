/* mpitrain configuration: one INI file, read with libinih.
 *
 * Singleton sections [run] [data] [train] [optimizer] [parallel] hold
 * settings; layer sections ([conv] [dense] [maxpool] ...) repeat, in order,
 * as in Darknet cfg files. A final [softmax] section means the loss is
 * softmax cross-entropy. Every key has a default (docs/config.md); an
 * unknown section or key, a value that does not parse or is out of range is
 * an error naming the file, line and key. Overrides from the command line,
 * "--set section.key=value" (or "layerN.key=value" for the N-th layer
 * section), go through the same checks. */
#ifndef MPITRAIN_CONFIG_H
#define MPITRAIN_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mpitrain/layer.h"
#include "mpitrain/loss.h"
#include "mpitrain/optim.h"

#define MT_PATH_LEN 1024

/* Metrics that early stopping, reduce-on-plateau and the best checkpoint
 * can watch ([train] monitor, [optimizer] plateau_monitor, [checkpoint]
 * best): every per-epoch value of the metrics log, named as there with
 * the record's prefix (val_macro_f1 is "macro_f1" of a "val" record). */
typedef enum mt_monitor {
    MT_MONITOR_NONE,
    MT_MONITOR_VAL_LOSS,
    MT_MONITOR_VAL_ACCURACY,
    MT_MONITOR_TRAIN_LOSS,
    MT_MONITOR_TRAIN_ACCURACY,
    MT_MONITOR_VAL_ERROR_RATE,
    MT_MONITOR_VAL_PERPLEXITY,
    MT_MONITOR_VAL_MACRO_PRECISION,
    MT_MONITOR_VAL_MACRO_RECALL,
    MT_MONITOR_VAL_MACRO_F1,
    MT_MONITOR_VAL_ROC_AUC,
    MT_MONITOR_VAL_MAE,
    MT_MONITOR_VAL_R2,
    MT_MONITORS
} mt_monitor;

/* "none", "val_loss", ... indexed by mt_monitor; NULL-terminated. */
extern const char *const mt_monitor_names[];
/* 1 for metrics that improve downwards (losses, error rate, perplexity,
 * MAE), 0 for the others. */
int mt_monitor_minimizes(int monitor);

typedef enum mt_progress {
    MT_PROGRESS_AUTO, /* bar on a terminal, lines otherwise */
    MT_PROGRESS_BAR,
    MT_PROGRESS_LINES,
    MT_PROGRESS_NONE
} mt_progress;

/* One layer section as written: a layer and an optional activation that
 * follows it (dense/conv "activation = relu"). */
typedef struct mt_config_layer {
    mt_layer_spec spec;
    int activation; /* an mt_layer_kind, or -1 */
    float alpha;    /* leaky relu slope for the activation */
} mt_config_layer;

typedef struct mt_config {
    char path[MT_PATH_LEN]; /* the INI file */
    /* [run] */
    char dir[MT_PATH_LEN]; /* run directory: metrics.jsonl, weights */
    uint64_t seed;
    size_t threads;      /* OpenBLAS threads per rank */
    int flush_denormals; /* FTZ/DAZ on */
    int progress;        /* mt_progress */
    double deadline_s;   /* longest wait for other ranks; 0: none */
    /* [data] */
    char train[MT_PATH_LEN], test[MT_PATH_LEN];
    double validation; /* fraction of train held out */
    size_t limit;      /* use only the first `limit` training samples */
    size_t shift;      /* augmentation: random shifts up to this, pixels */
    int flip;          /* augmentation: random horizontal flips */
    double fetch_mb;   /* rows fetched from their owners at a time */
    /* [train] */
    size_t epochs, batch, log_every, max_steps;
    size_t accumulate; /* micro-batches of `batch` per optimizer step */
    double clip_norm;  /* max L2 norm of the gradient, 0: off */
    char class_weights[MT_PATH_LEN]; /* "", "auto" or "w0,w1,..." */
    int sampling;       /* mt_sampling: class over/undersampling */
    float focal_gamma;  /* focal loss exponent, 0: plain cross-entropy */
    int precision;      /* 0 fp32, 1 bf16 (mt_layer_spec.bf16) */
    int monitor;        /* early stopping: 0 off, mt_monitor otherwise */
    size_t patience;    /* epochs without improvement before stopping */
    double min_delta;   /* smallest change that counts as improvement */
    int mode;           /* 0 auto, 1 min, 2 max */
    int restore_best;   /* put the best weights back at the end */
    int loss; /* mt_loss_kind */
    /* [optimizer] */
    mt_optim_cfg optim;
    int schedule;          /* mt_schedule_kind */
    double step_epochs;    /* step schedule: epochs between decays */
    double gamma;          /* step schedule: factor per decay */
    double min_lr;         /* cosine schedule: final rate */
    size_t warmup_steps;
    double decay;           /* inverse_time: per step */
    char milestones_text[MT_PATH_LEN]; /* multistep: "e1,e2,..." epochs */
    double milestones[32];  /* parsed from milestones_text */
    size_t n_milestones;
    double restart_epochs;  /* cosine_restarts: first cycle */
    double restart_mult;    /* cosine_restarts: cycle growth */
    double plateau_factor;  /* reduce-on-plateau: lr factor, 0: off */
    size_t plateau_patience;
    int plateau_monitor;    /* an mt_monitor */
    double plateau_min_lr;
    /* [parallel] */
    int sync;       /* mt_sync_kind: 0 allreduce, 1 ring, 2 ps */
    size_t ps_servers; /* sync = ps: dedicated server ranks; 0: colocated
                          (every rank is a worker and a server) */
    int ps_async;      /* ps_mode: 0 sync, 1 async (stale-synchronous) */
    size_t staleness;  /* async: steps a worker may run ahead */
    double bucket_mb;
    int overlap;    /* reduce buckets while backward runs */
    int progress_thread; /* mt_progress_mode: off, on */
    int defer_update;    /* buckets applied in the next step's forward */
    int shard_optimizer; /* each rank steps a block of every bucket */
    int shared_memory;   /* mt_shm_mode: false, true, auto */
    int compress;   /* mt_compress: ring payload */
    size_t segment_kb;
    double ring_min_kb; /* smaller buffers: MPI_Allreduce, not the ring */
    int deterministic; /* fixed groups and summation order */
    size_t group;      /* deterministic: samples per gradient group */
    size_t stages;        /* pipeline stages (1: none) */
    size_t micro_batches; /* per step and replica; 0: auto, 4 x stages */
    int pipe_schedule;    /* mt_pipe_schedule: gpipe, 1f1b, zb */
    int pipe_recompute;   /* 1: stages never keep activations */
    char split_text[MT_PATH_LEN]; /* "auto", or "3,7": the last layer of
                                     each stage but the last */
    size_t split[64];     /* parsed from split_text; n_split 0: auto */
    size_t n_split;
    /* [checkpoint] */
    char ckpt_dir[MT_PATH_LEN]; /* empty: RUN_DIR/checkpoints */
    size_t every_steps;         /* 0: off */
    double every_minutes;       /* 0: off */
    size_t keep;                /* newest checkpoints kept */
    int keep_best;              /* an mt_monitor; MT_MONITOR_NONE: off */
    /* layer sections, in order */
    mt_config_layer *layers;
    size_t n_layers, cap_layers;
    int softmax_line; /* line of [softmax], 0 if absent */
} mt_config;

/* Sets every default. */
void mt_config_defaults(mt_config *c);
/* Reads an INI file over the defaults, then applies `n_sets` overrides
 * ("section.key=value"), then checks the whole. */
int mt_config_load(mt_config *c, const char *path, char *const *sets,
                   size_t n_sets, char *err);
/* Applies one "section.key=value" override. */
int mt_config_set(mt_config *c, const char *assignment, char *err);
/* Checks values that depend on each other (batch > 0, data.train set...). */
int mt_config_check(const mt_config *c, char *err);
/* Whether [parallel] shared_memory can apply to c's run: sync = allreduce
 * or ring, no stages, defer_update, deterministic or progress_thread
 * (true is refused elsewhere; auto is off there). */
int mt_config_shared_memory_applies(const mt_config *c);
void mt_config_free(mt_config *c);

/* The model's layers with activations expanded; *specs is malloc'd and
 * owned by the caller. */
int mt_config_layer_specs(const mt_config *c, mt_layer_spec **specs,
                          size_t *n, char *err);

/* Writes the resolved configuration (every key, defaults included) as INI
 * that mt_config_load reads back to the same values. */
void mt_config_write(const mt_config *c, FILE *out);

/* Compares two resolved configurations (mt_config_write's text) key by
 * key and calls emit once per difference with a line such as
 * "train.epochs: 10 -> 20", "layer3.weight_decay: (unset) -> 0.1" or
 * "layer5: [dropout] -> (unset)"; layer keys are named layerN.key, as
 * --set takes them. Returns the number of differences. */
size_t mt_config_diff(const char *before, const char *after,
                      void (*emit)(const char *line, void *user),
                      void *user);

#endif
