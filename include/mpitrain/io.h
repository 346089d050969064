/* mpitrain I/O: model weights in HDF5, the JSON-lines metrics log, and
 * progress output (only rank 0 calls these printing functions). */
#ifndef MPITRAIN_IO_H
#define MPITRAIN_IO_H

#include <stddef.h>
#include <stdio.h>

#include "mpitrain/model.h"

/* Writes every tensor of the model as /model/<layer>/<tensor> (float32,
 * natural shape, Fletcher-32 checksummed), the resolved config text as
 * /config (may be NULL) and format attributes. Written as path.partial and
 * renamed when complete. Called by one rank. */
int mt_weights_save(mt_model *m, const char *path, const char *config_text,
                    char *err);
/* The same in parts, for pipeline stages that each hold some layers:
 * writes the tensors of the layers m holds into path.partial, created
 * (with the attributes and config) if first, else added to; renamed to
 * path if last. One writer at a time, first to last; on failure
 * path.partial is removed. */
int mt_weights_save_part(mt_model *m, const char *path,
                         const char *config_text, int first, int last,
                         char *err);
/* Reads the tensors of the layers m holds (all, but for a pipeline
 * stage) back into a model of the same architecture; a missing tensor or
 * a shape mismatch is an error naming the tensor, with the expected and
 * found shapes. */
int mt_weights_load(mt_model *m, const char *path, char *err);

/* Creates a directory and its parents (mkdir -p). */
int mt_mkdirs(const char *path, char *err);

/* The metrics log: one JSON object per line. */
typedef struct mt_metrics_log {
    FILE *fp;
} mt_metrics_log;

int mt_metrics_open(mt_metrics_log *log, const char *path, char *err);
/* One record. accuracy < 0 is written as null (no accuracy for this loss).
 * extra (may be NULL) is appended inside the object: ",\"key\":value...",
 * as mt_json_append builds it. */
void mt_metrics_write(mt_metrics_log *log, const char *split, size_t epoch,
                      size_t step, double loss, double accuracy,
                      double samples_per_s, double lr, double wall_s,
                      const char *extra);
/* Appends ,"key":v to buf (null for NaN or Inf, which JSON lacks). */
void mt_json_append(char *buf, size_t len, const char *key, double v);
void mt_metrics_flush(mt_metrics_log *log);
void mt_metrics_close(mt_metrics_log *log);

/* Progress: a bar redrawn in place on a terminal, or a plain line per call
 * in a batch log. */
typedef struct mt_progress_out {
    FILE *fp;
    int bar; /* 1: redraw with \r */
    int drawn;
} mt_progress_out;

void mt_progress_init(mt_progress_out *p, FILE *fp, int mode);
/* eta_s: seconds the whole run still needs (< 0: not known yet). */
void mt_progress_step(mt_progress_out *p, size_t epoch, size_t epochs,
                      size_t step, size_t steps, double loss, double acc,
                      double samples_per_s, double eta_s);
/* Ends a bar line so that normal printing can follow. */
void mt_progress_end(mt_progress_out *p);

#endif
