/* The table of every configuration key: its section, type, range and where
 * it lives. Parsing, overrides and the resolved-config writer all read this
 * one table, so a key added here is parsed, checked and written. */
#include <stddef.h>

#include "io/config_internal.h"

static const char *const progress_names[] = {"auto", "bar", "lines", "none",
                                             NULL};
static const char *const loss_names[] = {"softmax_ce", "sigmoid_bce", "mse",
                                         NULL};
static const char *const optim_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedule_names[] = {
    "constant",     "step",         "cosine",          "multistep",
    "exponential",  "inverse_time", "cosine_restarts", NULL};
const char *const mt_monitor_names[] = {
    "none",           "val_loss",           "val_accuracy",
    "train_loss",     "train_accuracy",     "val_error_rate",
    "val_perplexity", "val_macro_precision", "val_macro_recall",
    "val_macro_f1",   "val_roc_auc",        "val_mae",
    "val_r2",         NULL};

int mt_monitor_minimizes(int m)
{
    return m == MT_MONITOR_VAL_LOSS || m == MT_MONITOR_TRAIN_LOSS ||
           m == MT_MONITOR_VAL_ERROR_RATE || m == MT_MONITOR_VAL_PERPLEXITY ||
           m == MT_MONITOR_VAL_MAE;
}
static const char *const sampling_names[] = {"none", "oversample",
                                             "undersample", NULL};
static const char *const mode_names[] = {"auto", "min", "max", NULL};
static const char *const sync_names[] = {"allreduce", "ring", NULL};
static const char *const compress_names[] = {"none", "bf16", NULL};
static const char *const init_names[] = {"auto", "he", "xavier", NULL};

#define RUN(k, t, f, lo, hi, n) {"run", k, t, offsetof(mt_config, f), lo, hi, n}
#define DATA(k, t, f, lo, hi) {"data", k, t, offsetof(mt_config, f), lo, hi, NULL}
#define TRAIN(k, t, f, lo, hi, n) {"train", k, t, offsetof(mt_config, f), lo, hi, n}
#define OPT(k, t, f, lo, hi, n) \
    {"optimizer", k, t, offsetof(mt_config, optim.f), lo, hi, n}
#define PAR(k, t, f, lo, hi, n) {"parallel", k, t, offsetof(mt_config, f), lo, hi, n}

const mt__key_def mt__config_keys[] = {
    RUN("dir", T_PATH, dir, 0, 0, NULL),
    RUN("seed", T_U64, seed, 0, 0, NULL),
    RUN("threads", T_SIZE, threads, 1, 1024, NULL),
    RUN("flush_denormals", T_BOOL, flush_denormals, 0, 1, NULL),
    RUN("progress", T_ENUM, progress, 0, 0, progress_names),
    DATA("train", T_PATH, train, 0, 0),
    DATA("test", T_PATH, test, 0, 0),
    DATA("validation", T_DOUBLE, validation, 0, 0.99),
    DATA("limit", T_SIZE, limit, 0, 1e15),
    DATA("shift", T_SIZE, shift, 0, 64),
    DATA("flip", T_BOOL, flip, 0, 1),
    TRAIN("epochs", T_SIZE, epochs, 1, 1e9, NULL),
    TRAIN("batch", T_SIZE, batch, 1, 1e7, NULL),
    TRAIN("log_every", T_SIZE, log_every, 1, 1e9, NULL),
    TRAIN("max_steps", T_SIZE, max_steps, 0, 1e15, NULL),
    TRAIN("accumulate", T_SIZE, accumulate, 1, 1e6, NULL),
    TRAIN("clip_norm", T_DOUBLE, clip_norm, 0, 1e12, NULL),
    TRAIN("class_weights", T_PATH, class_weights, 0, 0, NULL),
    TRAIN("sampling", T_ENUM, sampling, 0, 0, sampling_names),
    TRAIN("focal_gamma", T_FLOAT, focal_gamma, 0, 10, NULL),
    TRAIN("monitor", T_ENUM, monitor, 0, 0, mt_monitor_names),
    TRAIN("patience", T_SIZE, patience, 0, 1e9, NULL),
    TRAIN("min_delta", T_DOUBLE, min_delta, 0, 1e12, NULL),
    TRAIN("mode", T_ENUM, mode, 0, 0, mode_names),
    TRAIN("restore_best", T_BOOL, restore_best, 0, 1, NULL),
    TRAIN("loss", T_ENUM, loss, 0, 0, loss_names),
    OPT("type", T_ENUM, kind, 0, 0, optim_names),
    OPT("lr", T_FLOAT, lr, 1e-12, 1e3, NULL),
    OPT("momentum", T_FLOAT, momentum, 0, 0.9999, NULL),
    OPT("nesterov", T_BOOL, nesterov, 0, 1, NULL),
    OPT("beta1", T_FLOAT, beta1, 0, 0.9999, NULL),
    OPT("beta2", T_FLOAT, beta2, 0, 0.999999, NULL),
    OPT("eps", T_FLOAT, eps, 1e-30, 1, NULL),
    OPT("weight_decay", T_FLOAT, weight_decay, 0, 10, NULL),
    OPT("l1", T_FLOAT, l1, 0, 10, NULL),
    {"optimizer", "schedule", T_ENUM, offsetof(mt_config, schedule), 0, 0,
     schedule_names},
    {"optimizer", "step_epochs", T_DOUBLE, offsetof(mt_config, step_epochs),
     0, 1e9, NULL},
    {"optimizer", "gamma", T_DOUBLE, offsetof(mt_config, gamma), 0, 1, NULL},
    {"optimizer", "min_lr", T_DOUBLE, offsetof(mt_config, min_lr), 0, 1e3,
     NULL},
    {"optimizer", "warmup_steps", T_SIZE, offsetof(mt_config, warmup_steps),
     0, 1e12, NULL},
    {"optimizer", "decay", T_DOUBLE, offsetof(mt_config, decay), 0, 1e6,
     NULL},
    {"optimizer", "milestones", T_PATH, offsetof(mt_config, milestones_text),
     0, 0, NULL},
    {"optimizer", "restart_epochs", T_DOUBLE,
     offsetof(mt_config, restart_epochs), 0, 1e9, NULL},
    {"optimizer", "restart_mult", T_DOUBLE, offsetof(mt_config, restart_mult),
     1, 1e3, NULL},
    {"optimizer", "plateau_factor", T_DOUBLE,
     offsetof(mt_config, plateau_factor), 0, 0.999, NULL},
    {"optimizer", "plateau_patience", T_SIZE,
     offsetof(mt_config, plateau_patience), 0, 1e9, NULL},
    {"optimizer", "plateau_monitor", T_ENUM,
     offsetof(mt_config, plateau_monitor), 0, 0, mt_monitor_names},
    {"optimizer", "plateau_min_lr", T_DOUBLE,
     offsetof(mt_config, plateau_min_lr), 0, 1e3, NULL},
    PAR("sync", T_ENUM, sync, 0, 0, sync_names),
    PAR("bucket_mb", T_DOUBLE, bucket_mb, 1e-6, 4096, NULL),
    PAR("overlap", T_BOOL, overlap, 0, 1, NULL),
    PAR("compress", T_ENUM, compress, 0, 0, compress_names),
    PAR("segment_kb", T_SIZE, segment_kb, 1, 1 << 20, NULL),
    PAR("ring_min_kb", T_DOUBLE, ring_min_kb, 0, 1 << 20, NULL),
    PAR("deterministic", T_BOOL, deterministic, 0, 1, NULL),
    PAR("group", T_SIZE, group, 1, 1e6, NULL),
    {"checkpoint", "dir", T_PATH, offsetof(mt_config, ckpt_dir), 0, 0, NULL},
    {"checkpoint", "every_steps", T_SIZE, offsetof(mt_config, every_steps), 0,
     1e15, NULL},
    {"checkpoint", "every_minutes", T_DOUBLE,
     offsetof(mt_config, every_minutes), 0, 1e9, NULL},
    {"checkpoint", "keep", T_SIZE, offsetof(mt_config, keep), 1, 1e6, NULL},
    {"checkpoint", "best", T_ENUM, offsetof(mt_config, keep_best), 0, 0,
     mt_monitor_names},
    {NULL, NULL, 0, 0, 0, 0, NULL}};

#define L(kind, k, t, f, lo, hi, n) \
    {kind, k, t, offsetof(mt_config_layer, f), lo, hi, n}
#define SPEC(kind, k, t, f, lo, hi) L(kind, k, t, spec.f, lo, hi, NULL)

const mt__key_def mt__layer_keys[] = {
    SPEC("dense", "units", T_SIZE, units, 1, 1e8),
    SPEC("dense", "inputs", T_SIZE, inputs, 0, 1e9),
    L("dense", "activation", T_ACT, activation, 0, 0, NULL),
    L("dense", "init", T_ENUM, spec.init, 0, 0, init_names),
    SPEC("dense", "weight_decay", T_OPT_FLOAT, weight_decay, 0, 10),
    SPEC("dense", "l1", T_OPT_FLOAT, l1, 0, 10),
    SPEC("conv", "filters", T_SIZE, filters, 1, 1e6),
    SPEC("conv", "size", T_SIZE, size, 1, 1024),
    SPEC("conv", "stride", T_SIZE, stride, 1, 1024),
    SPEC("conv", "pad", T_SIZE, pad, 0, 1024),
    L("conv", "activation", T_ACT, activation, 0, 0, NULL),
    L("conv", "init", T_ENUM, spec.init, 0, 0, init_names),
    SPEC("conv", "weight_decay", T_OPT_FLOAT, weight_decay, 0, 10),
    SPEC("conv", "l1", T_OPT_FLOAT, l1, 0, 10),
    SPEC("maxpool", "size", T_SIZE, size, 1, 1024),
    SPEC("maxpool", "stride", T_SIZE, stride, 0, 1024),
    SPEC("maxpool", "pad", T_SIZE, pad, 0, 1024),
    SPEC("avgpool", "size", T_SIZE, size, 1, 1024),
    SPEC("avgpool", "stride", T_SIZE, stride, 0, 1024),
    SPEC("avgpool", "pad", T_SIZE, pad, 0, 1024),
    SPEC("leaky", "alpha", T_FLOAT, alpha, 0, 1),
    SPEC("dropout", "rate", T_FLOAT, rate, 0, 0.99),
    SPEC("batchnorm", "momentum", T_FLOAT, momentum, 0, 1),
    SPEC("batchnorm", "eps", T_FLOAT, eps, 1e-20, 1),
    SPEC("batchnorm", "weight_decay", T_OPT_FLOAT, weight_decay, 0, 10),
    SPEC("batchnorm", "l1", T_OPT_FLOAT, l1, 0, 10),
    {NULL, NULL, 0, 0, 0, 0, NULL}};
