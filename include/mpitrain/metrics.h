/* mpitrain classification metrics, computed from counts so that they are
 * exact over a sharded evaluation set (sum the confusion matrices of the
 * ranks, never average their averages).
 *
 * Conventions follow scikit-learn (checked against it in
 * tests/test_metrics.c): a precision or recall with nothing to divide is
 * 0; macro and weighted averages run over the classes that occur in the
 * labels or the predictions; micro averages equal accuracy for
 * single-label problems. ROC AUC is exact (ranks with ties averaged, the
 * Mann-Whitney statistic), and undefined (reported as such) when a class
 * has no positive or no negative sample. */
#ifndef MPITRAIN_METRICS_H
#define MPITRAIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mt_class_stats {
    double precision, recall, f1;
    uint64_t support; /* samples whose label is this class */
    uint64_t predicted;
} mt_class_stats;

typedef struct mt_averages {
    double precision, recall, f1;
} mt_averages;

typedef struct mt_report {
    size_t K;
    uint64_t n, correct;
    double accuracy;
    mt_class_stats *cls; /* (K) */
    mt_averages macro, micro, weighted;
} mt_report;

/* cm is (K, K) counts, row = true class, column = predicted class. Fills
 * r (r->cls is malloc'd; mt_report_free). */
int mt_report_from_confusion(const uint64_t *cm, size_t K, mt_report *r);
void mt_report_free(mt_report *r);

/* Whether metric value v improves on best by more than delta (downwards
 * when minimize): the one comparison of early stopping, the plateau, the
 * best checkpoint and the search. An undefined value (NaN: an AUC
 * without positives) never improves; any value beats none yet (best
 * NaN); the infinities compare as numbers. */
int mt_metric_improves(double v, double best, int minimize, double delta);

/* Exact ROC AUC of scores for a binary problem (positive[i] != 0 marks
 * the positives). *defined = 0 (and NaN returned) without positives or
 * negatives, or when a score is NaN (as scikit-learn refuses NaN input);
 * -Inf and +Inf scores are ordered like any other, ties included. Sorts a
 * copy: O(n log n), n doubles of scratch. */
double mt_roc_auc(const float *scores, const uint8_t *positive, size_t n,
                  int *defined);

/* One-vs-rest macro AUC for K classes: scores (n, K), labels (n). Classes
 * with an undefined AUC are left out of the mean and counted in
 * *undefined; NaN if none is defined. Any NaN score makes the whole AUC
 * NaN (*undefined = K), never a mean over the other classes. */
double mt_roc_auc_ovr(const float *scores, const int32_t *labels, size_t n,
                      size_t K, size_t *undefined);

/* Samples whose label is among the k highest scores (ties count for the
 * label: it is in the top k if fewer than k classes score higher). A NaN
 * score of the label's class is a miss; other classes' NaN scores are
 * not higher than anything. */
uint64_t mt_top_k_correct(const float *scores, const int32_t *labels,
                          size_t n, size_t K, size_t k);

/* Regression: per output k, sums[5 k + 0..4] += squared error, absolute
 * error, target, target^2, count. Sums from several ranks add up. */
void mt_regression_add(const float *pred, const float *target, size_t n,
                       size_t K, double *sums);
/* MSE and MAE over all outputs, R^2 averaged over the outputs (sklearn's
 * uniform_average); R^2 is NaN for an output whose targets are constant. */
void mt_regression_finish(const double *sums, size_t K, double *mse,
                          double *mae, double *r2);

#endif
