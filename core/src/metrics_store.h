/* metrics_store.h - the storage behind metrics.h, shared with export.c. */
#ifndef PGSPOUT_METRICS_STORE_H
#define PGSPOUT_METRICS_STORE_H

#include "metrics.h"
#include "options.h"

#include <stdatomic.h>
#include <stddef.h>

/* Label slots: the last is the overflow, PGS_OTHER_LABEL, where a stream
 * labelled "other" is counted too, so no two series carry label="other". */
#define PGS_MAX_LABELS           32
#define PGS_OTHER_LABEL          "other"
#define PGS_MAX_SQLSTATE_CLASSES 64
#define PGS_HIST_MAX_BUCKETS     16

typedef struct pgs_hist_def {
    const char *name; /* without the pgspout_ prefix */
    const char *help;
    int nb;
    double le[PGS_HIST_MAX_BUCKETS];
} pgs_hist_def;

/* The count is not stored: exporters take it as the sum of the buckets, so
 * that a scrape taken while observations land still has +Inf == _count. */
typedef struct pgs_hist {
    _Atomic uint64_t bucket[PGS_HIST_MAX_BUCKETS + 1]; /* not cumulative; +Inf last */
    _Atomic uint64_t sum_bits;                         /* a double, updated by compare-and-swap */
} pgs_hist;

enum { H_TTFR, H_DURATION, H_CHUNK_ROWS, H_PAUSE, H_BUFFER, H_LABEL_N };

/* Per-label counters: the order of pgs_counter_defs. */
enum {
    C_STARTED,
    C_COMPLETED,
    C_FAILED,
    C_CANCELLED,
    C_ROWS,
    C_BYTES,
    C_FILTERED,
    C_CHUNKS,
    C_PAUSES,
    C_RESUMES,
    C_PAUSE_TIMEOUTS,
    C_MEM_WARNINGS,
    C_MEM_LIMITS,
    C_LABEL_N
};
enum { G_ACTIVE, G_PAUSED, G_BUFFERED, G_CHUNK_ROWS, G_LABEL_N };

struct pgs_label_metrics {
    char name[PGS_LABEL_MAX + 1];
    _Atomic int used;
    _Atomic uint64_t counter[C_LABEL_N];
    _Atomic uint64_t limited[PGS_LIMIT_N];
    _Atomic int64_t gauge[G_LABEL_N];
    pgs_hist hist[H_LABEL_N];
};

/* Pool slots (pool.c), keyed by the pool's label like stream labels. */
#define PGS_MAX_POOLS 16
enum { PC_ACQUIRES, PC_WAITS, PC_TIMEOUTS, PC_CREATED, PC_RESETS, PC_POOL_N };
enum { PG_SIZE, PG_IDLE, PG_IN_USE, PG_WAITING, PG_MAX, PG_POOL_N };

struct pgs_pool_metrics {
    char name[PGS_LABEL_MAX + 1];
    _Atomic int used;
    _Atomic uint64_t counter[PC_POOL_N];
    _Atomic uint64_t closed[PGS_POOL_CLOSE_N];
    _Atomic int64_t gauge[PG_POOL_N];
    pgs_hist acquire_time;
};

typedef struct pgs_metric_def {
    const char *name;
    const char *help;
} pgs_metric_def;

extern const pgs_metric_def pgs_counter_defs[C_LABEL_N];
extern const pgs_metric_def pgs_gauge_defs[G_LABEL_N];
extern const pgs_hist_def pgs_hist_defs[H_LABEL_N];
extern const pgs_hist_def pgs_connect_hist_def;
extern const char *const pgs_limit_names[PGS_LIMIT_N];
extern const pgs_metric_def pgs_pool_counter_defs[PC_POOL_N];
extern const pgs_metric_def pgs_pool_gauge_defs[PG_POOL_N];
extern const pgs_hist_def pgs_pool_acquire_hist_def;
extern const char *const pgs_pool_close_names[PGS_POOL_CLOSE_N];

typedef struct pgs_metrics_global {
    _Atomic uint64_t connections_opened;
    _Atomic uint64_t connections_failed;
    _Atomic uint64_t notifications_dropped;
    pgs_hist connect_time;
    struct pgs_label_metrics labels[PGS_MAX_LABELS];
    struct {
        char cls[3];
        _Atomic uint64_t n;
    } sqlstate[PGS_MAX_SQLSTATE_CLASSES];
    _Atomic int nsqlstate;
    struct pgs_pool_metrics pools[PGS_MAX_POOLS];
} pgs_metrics_global;

extern pgs_metrics_global pgs_metrics;

double pgs_hist_sum(const pgs_hist *h);

#endif
