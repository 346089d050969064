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
const char *const mt__singletons[] = {"run",      "data",
                                      "train",    "optimizer",
                                      "parallel", "checkpoint",
                                      NULL};

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

static const char *const precision_names[] = {"fp32", "bf16", NULL};
static const char *const dense_backend_names[] = {"auto", "openblas",
                                                  "onednn", NULL};
static const char *const sampling_names[] = {"none", "oversample",
                                             "undersample", NULL};
static const char *const mode_names[] = {"auto", "min", "max", NULL};
static const char *const sync_names[] = {"allreduce", "ring", "ps", NULL};
static const char *const colocated_name[] = {"colocated", NULL};
static const char *const ps_mode_names[] = {"sync", "async", NULL};
static const char *const compress_names[] = {"none", "bf16", NULL};
static const char *const progress_thread_names[] = {"off", "on", NULL};
/* In mt_shm_mode's order. */
static const char *const shared_memory_names[] = {"false", "true", "auto",
                                                  NULL};
static const char *const init_names[] = {"auto", "he", "xavier", NULL};
static const char *const auto_name[] = {"auto", NULL};
static const char *const conv_backend_names[] = {"auto", "im2col", "onednn",
                                                 "direct", NULL};
static const char *const pipe_schedule_names[] = {"gpipe", "1f1b", "zb",
                                                  NULL};

/* section, key, type, where, range, names (T_ENUM), default as INI text
 * (NULL: zero, or unset for T_OPT_FLOAT). */
#define K(sec, k, t, field, lo, hi, n, def) \
    {sec, k, t, offsetof(mt_config, field), lo, hi, n, def}

const mt__key_def mt__config_keys[] = {
    K("run", "dir", T_PATH, dir, 0, 0, NULL, "runs/default"),
    K("run", "seed", T_U64, seed, 0, 0, NULL, "42"),
    K("run", "threads", T_SIZE, threads, 1, 1024, NULL, "1"),
    K("run", "flush_denormals", T_BOOL, flush_denormals, 0, 1, NULL, "true"),
    K("run", "progress", T_ENUM, progress, 0, 0, progress_names, "auto"),
    K("run", "deadline_s", T_DOUBLE, deadline_s, 0, 1e9, NULL, "600"),
    K("data", "train", T_PATH, train, 0, 0, NULL, NULL),
    K("data", "test", T_PATH, test, 0, 0, NULL, NULL),
    K("data", "validation", T_DOUBLE, validation, 0, 0.99, NULL, "0.1"),
    K("data", "limit", T_SIZE, limit, 0, 1e15, NULL, "0"),
    K("data", "shift", T_SIZE, shift, 0, 64, NULL, "0"),
    K("data", "flip", T_BOOL, flip, 0, 1, NULL, "false"),
    K("data", "fetch_mb", T_DOUBLE, fetch_mb, 1e-6, 1e9, NULL, "64"),
    K("train", "epochs", T_SIZE, epochs, 1, 1e9, NULL, "10"),
    K("train", "batch", T_SIZE, batch, 1, 1e7, NULL, "64"),
    K("train", "log_every", T_SIZE, log_every, 1, 1e9, NULL, "100"),
    K("train", "max_steps", T_SIZE, max_steps, 0, 1e15, NULL, "0"),
    K("train", "accumulate", T_SIZE, accumulate, 1, 1e6, NULL, "1"),
    K("train", "clip_norm", T_DOUBLE, clip_norm, 0, 1e12, NULL, "0"),
    K("train", "class_weights", T_PATH, class_weights, 0, 0, NULL, NULL),
    K("train", "sampling", T_ENUM, sampling, 0, 0, sampling_names, "none"),
    K("train", "focal_gamma", T_FLOAT, focal_gamma, 0, 10, NULL, "0"),
    K("train", "precision", T_ENUM, precision, 0, 0, precision_names,
      "fp32"),
    K("train", "monitor", T_ENUM, monitor, 0, 0, mt_monitor_names, "none"),
    K("train", "patience", T_SIZE, patience, 0, 1e9, NULL, "5"),
    K("train", "min_delta", T_DOUBLE, min_delta, 0, 1e12, NULL, "0"),
    K("train", "mode", T_ENUM, mode, 0, 0, mode_names, "auto"),
    K("train", "restore_best", T_BOOL, restore_best, 0, 1, NULL, "true"),
    K("train", "loss", T_ENUM, loss, 0, 0, loss_names, "softmax_ce"),
    K("optimizer", "type", T_ENUM, optim.kind, 0, 0, optim_names, "sgd"),
    K("optimizer", "lr", T_FLOAT, optim.lr, 1e-12, 1e3, NULL, "0.01"),
    K("optimizer", "momentum", T_FLOAT, optim.momentum, 0, 0.9999, NULL,
      "0.9"),
    K("optimizer", "nesterov", T_BOOL, optim.nesterov, 0, 1, NULL, "false"),
    K("optimizer", "beta1", T_FLOAT, optim.beta1, 0, 0.9999, NULL, "0.9"),
    K("optimizer", "beta2", T_FLOAT, optim.beta2, 0, 0.999999, NULL, "0.999"),
    K("optimizer", "eps", T_FLOAT, optim.eps, 1e-30, 1, NULL, "1e-8"),
    K("optimizer", "weight_decay", T_FLOAT, optim.weight_decay, 0, 10, NULL,
      "0"),
    K("optimizer", "l1", T_FLOAT, optim.l1, 0, 10, NULL, "0"),
    K("optimizer", "schedule", T_ENUM, schedule, 0, 0, schedule_names,
      "constant"),
    K("optimizer", "step_epochs", T_DOUBLE, step_epochs, 0, 1e9, NULL, "0"),
    K("optimizer", "gamma", T_DOUBLE, gamma, 0, 1, NULL, "0.1"),
    K("optimizer", "min_lr", T_DOUBLE, min_lr, 0, 1e3, NULL, "0"),
    K("optimizer", "warmup_steps", T_SIZE, warmup_steps, 0, 1e12, NULL, "0"),
    K("optimizer", "decay", T_DOUBLE, decay, 0, 1e6, NULL, "0"),
    K("optimizer", "milestones", T_PATH, milestones_text, 0, 0, NULL, NULL),
    K("optimizer", "restart_epochs", T_DOUBLE, restart_epochs, 0, 1e9, NULL,
      "0"),
    K("optimizer", "restart_mult", T_DOUBLE, restart_mult, 1, 1e3, NULL, "1"),
    K("optimizer", "plateau_factor", T_DOUBLE, plateau_factor, 0, 0.999, NULL,
      "0"),
    K("optimizer", "plateau_patience", T_SIZE, plateau_patience, 0, 1e9, NULL,
      "2"),
    K("optimizer", "plateau_monitor", T_ENUM, plateau_monitor, 0, 0,
      mt_monitor_names, "val_loss"),
    K("optimizer", "plateau_min_lr", T_DOUBLE, plateau_min_lr, 0, 1e3, NULL,
      "0"),
    K("parallel", "sync", T_ENUM, sync, 0, 0, sync_names, "allreduce"),
    K("parallel", "bucket_mb", T_DOUBLE, bucket_mb, 1e-6, 4096, NULL, "1"),
    K("parallel", "overlap", T_BOOL, overlap, 0, 1, NULL, "true"),
    K("parallel", "progress_thread", T_ENUM, progress_thread, 0, 0,
      progress_thread_names, "off"),
    K("parallel", "defer_update", T_BOOL, defer_update, 0, 1, NULL, "false"),
    K("parallel", "shard_optimizer", T_BOOL, shard_optimizer, 0, 1, NULL,
      "false"),
    K("parallel", "shared_memory", T_ENUM, shared_memory, 0, 0,
      shared_memory_names, "auto"),
    K("parallel", "compress", T_ENUM, compress, 0, 0, compress_names, "none"),
    K("parallel", "segment_kb", T_SIZE, segment_kb, 1, 1 << 20, NULL, "1024"),
    K("parallel", "ring_min_kb", T_DOUBLE, ring_min_kb, 0, 1 << 20, NULL,
      "128"),
    K("parallel", "servers", T_SIZE, ps_servers, 1, 1 << 20, colocated_name,
      "colocated"),
    K("parallel", "ps_mode", T_ENUM, ps_async, 0, 0, ps_mode_names, "sync"),
    K("parallel", "staleness", T_SIZE, staleness, 0, 1000, NULL, "2"),
    K("parallel", "deterministic", T_BOOL, deterministic, 0, 1, NULL, "false"),
    K("parallel", "group", T_SIZE, group, 1, 1e6, NULL, "8"),
    K("parallel", "stages", T_SIZE, stages, 1, 4096, NULL, "1"),
    K("parallel", "micro_batches", T_SIZE, micro_batches, 1, 1 << 20,
      auto_name, "auto"),
    K("parallel", "schedule", T_ENUM, pipe_schedule, 0, 0,
      pipe_schedule_names, "1f1b"),
    K("parallel", "split", T_PATH, split_text, 0, 0, NULL, "auto"),
    K("parallel", "recompute", T_BOOL, pipe_recompute, 0, 1, NULL, "false"),
    K("checkpoint", "dir", T_PATH, ckpt_dir, 0, 0, NULL, NULL),
    K("checkpoint", "every_steps", T_SIZE, every_steps, 0, 1e15, NULL, "0"),
    K("checkpoint", "every_minutes", T_DOUBLE, every_minutes, 0, 1e9, NULL,
      "0"),
    K("checkpoint", "keep", T_SIZE, keep, 1, 1e6, NULL, "3"),
    K("checkpoint", "best", T_ENUM, keep_best, 0, 0, mt_monitor_names, "none"),
    {NULL, NULL, 0, 0, 0, 0, NULL, NULL}};

#define L(kind, k, t, f, lo, hi, n, def) \
    {kind, k, t, offsetof(mt_config_layer, f), lo, hi, n, def}
#define SPEC(kind, k, t, f, lo, hi, def) \
    L(kind, k, t, spec.f, lo, hi, NULL, def)

const mt__key_def mt__layer_keys[] = {
    SPEC("dense", "units", T_SIZE, units, 1, 1e8, NULL),
    SPEC("dense", "inputs", T_SIZE, inputs, 0, 1e9, "0"),
    L("dense", "activation", T_ACT, activation, 0, 0, NULL, "none"),
    L("dense", "backend", T_ENUM, spec.dense_backend, 0, 0,
      dense_backend_names, "auto"),
    L("dense", "init", T_ENUM, spec.init, 0, 0, init_names, "auto"),
    SPEC("dense", "weight_decay", T_OPT_FLOAT, weight_decay, 0, 10, NULL),
    SPEC("dense", "l1", T_OPT_FLOAT, l1, 0, 10, NULL),
    SPEC("conv", "filters", T_SIZE, filters, 1, 1e6, NULL),
    SPEC("conv", "size", T_SIZE, size, 1, 1024, NULL),
    SPEC("conv", "stride", T_SIZE, stride, 1, 1024, "1"),
    SPEC("conv", "pad", T_SIZE, pad, 0, 1024, "0"),
    L("conv", "activation", T_ACT, activation, 0, 0, NULL, "none"),
    L("conv", "init", T_ENUM, spec.init, 0, 0, init_names, "auto"),
    L("conv", "backend", T_ENUM, spec.backend, 0, 0, conv_backend_names,
      "auto"),
    SPEC("conv", "weight_decay", T_OPT_FLOAT, weight_decay, 0, 10, NULL),
    SPEC("conv", "l1", T_OPT_FLOAT, l1, 0, 10, NULL),
    SPEC("maxpool", "size", T_SIZE, size, 1, 1024, "2"),
    SPEC("maxpool", "stride", T_SIZE, stride, 0, 1024, "0"),
    SPEC("maxpool", "pad", T_SIZE, pad, 0, 1024, "0"),
    SPEC("avgpool", "size", T_SIZE, size, 1, 1024, "2"),
    SPEC("avgpool", "stride", T_SIZE, stride, 0, 1024, "0"),
    SPEC("avgpool", "pad", T_SIZE, pad, 0, 1024, "0"),
    SPEC("leaky", "alpha", T_FLOAT, alpha, 0, 1, "0.01"),
    SPEC("dropout", "rate", T_FLOAT, rate, 0, 0.99, "0.5"),
    SPEC("batchnorm", "momentum", T_FLOAT, momentum, 0, 1, "0.1"),
    SPEC("batchnorm", "eps", T_FLOAT, eps, 1e-20, 1, "1e-5"),
    SPEC("batchnorm", "weight_decay", T_OPT_FLOAT, weight_decay, 0, 10, NULL),
    SPEC("batchnorm", "l1", T_OPT_FLOAT, l1, 0, 10, NULL),
    {NULL, NULL, 0, 0, 0, 0, NULL, NULL}};
