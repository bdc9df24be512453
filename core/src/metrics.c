/* metrics.c - process-wide counters, gauges and histograms. */
#include "metrics_store.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

pgs_metrics_global pgs_metrics;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

#define SECONDS                                                                                    \
    {                                                                                              \
        0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300                       \
    }

const pgs_metric_def pgs_counter_defs[C_LABEL_N] = {
    [C_STARTED] = {"streams_started_total", "Streams opened."},
    [C_COMPLETED] = {"streams_completed_total", "Streams that delivered every row."},
    [C_FAILED] = {"streams_failed_total", "Streams that ended with an error (SQL, connection); "
                                          "limits count in streams_limited_total."},
    [C_CANCELLED] = {"streams_cancelled_total", "Streams cancelled by the caller or closed early."},
    [C_ROWS] = {"rows_total", "Rows delivered to callers."},
    [C_BYTES] = {"bytes_total", "Value bytes received from the server."},
    [C_FILTERED] = {"rows_filtered_total", "Rows skipped by a row filter."},
    [C_CHUNKS] = {"chunks_total", "Chunks read from the server."},
    [C_PAUSES] = {"pauses_total", "Pause calls that paused a running stream."},
    [C_RESUMES] = {"resumes_total", "Pauses that ended (resume, pause timeout or stream end)."},
    [C_PAUSE_TIMEOUTS] = {"pause_timeouts_total", "Pauses that reached pause_timeout."},
    [C_MEM_WARNINGS] = {"memory_warnings_total", "Streams whose buffer crossed memory_warn."},
    [C_MEM_LIMITS] = {"memory_limit_hits_total", "Streams failed by max_memory/memory_fail."},
};

const pgs_metric_def pgs_gauge_defs[G_LABEL_N] = {
    [G_ACTIVE] = {"active_streams", "Streams open and not yet ended."},
    [G_PAUSED] = {"paused_streams", "Streams paused now."},
    [G_BUFFERED] = {"buffered_bytes", "Bytes held in stream buffers now."},
    [G_CHUNK_ROWS] = {"chunk_rows_current",
                      "Chunk size (rows) of the most recent stream, adaptive."},
};

const pgs_hist_def pgs_hist_defs[H_LABEL_N] = {
    [H_TTFR] = {"time_to_first_row_seconds", "Time from open to the first row.", 14, SECONDS},
    [H_DURATION] = {"stream_duration_seconds", "Time from open to the end of a stream.", 14,
                    SECONDS},
    [H_CHUNK_ROWS] = {"chunk_rows",
                      "Rows per chunk read.",
                      9,
                      {1, 10, 100, 500, 1000, 5000, 10000, 50000, 100000}},
    [H_PAUSE] = {"pause_duration_seconds", "How long pauses lasted.", 14, SECONDS},
    [H_BUFFER] = {"buffer_bytes",
                  "Bytes buffered when a chunk was read.",
                  10,
                  {1024, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456,
                   1073741824}},
};

const pgs_hist_def pgs_connect_hist_def = {"connect_seconds", "Time to connect.", 14, SECONDS};

const char *const pgs_limit_names[PGS_LIMIT_N] = {
    [PGS_LIMIT_ROWS] = "max_rows",
    [PGS_LIMIT_MEMORY] = "max_memory",
    [PGS_LIMIT_TIMEOUT] = "timeout",
    [PGS_LIMIT_PAUSE_TIMEOUT] = "pause_timeout",
};

const pgs_metric_def pgs_pool_counter_defs[PC_POOL_N] = {
    [PC_ACQUIRES] = {"pool_acquires_total", "Connections handed out by pgspout_pool_acquire."},
    [PC_WAITS] = {"pool_acquire_waits_total",
                  "Acquire calls that had to wait for a connection (every connection in use)."},
    [PC_TIMEOUTS] = {"pool_acquire_timeouts_total", "Acquire calls that gave up at their timeout."},
    [PC_CREATED] = {"pool_connections_created_total", "Connections the pool opened."},
    [PC_RESETS] = {"pool_resets_total",
                   "Released connections reset (rolled back, session state discarded) for reuse."},
};

const pgs_metric_def pgs_pool_gauge_defs[PG_POOL_N] = {
    [PG_SIZE] = {"pool_connections", "Connections of the pool now: idle, in use and opening."},
    [PG_IDLE] = {"pool_idle_connections", "Connections idle in the pool now."},
    [PG_IN_USE] = {"pool_in_use_connections", "Connections acquired and not yet released."},
    [PG_WAITING] = {"pool_waiting", "Acquire calls waiting for a connection now."},
    [PG_MAX] = {"pool_max_connections", "The pool's max_size."},
};

const pgs_hist_def pgs_pool_acquire_hist_def = {
    "pool_acquire_seconds",
    "Time pgspout_pool_acquire took: waiting, checking a connection, opening one.",
    15,
    {0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}};

const char *const pgs_pool_close_names[PGS_POOL_CLOSE_N] = {
    [PGS_POOL_CLOSE_BROKEN] = "broken",
    [PGS_POOL_CLOSE_RESET_FAILED] = "reset_failed",
    [PGS_POOL_CLOSE_CANCEL_FAILED] = "cancel_failed",
    [PGS_POOL_CLOSE_IDLE_TIMEOUT] = "idle_timeout",
    [PGS_POOL_CLOSE_MAX_LIFETIME] = "max_lifetime",
    [PGS_POOL_CLOSE_POOL_CLOSED] = "pool_closed",
    [PGS_POOL_CLOSE_FORK] = "fork",
    [PGS_POOL_CLOSE_DISCARDED] = "discarded",
};

#define R memory_order_relaxed

static void hist_observe(pgs_hist *h, const pgs_hist_def *d, double v)
{
    if (!isfinite(v)) /* a clock gone wrong: NaN or Inf would poison _sum for good */
        return;
    int i = 0;
    while (i < d->nb && v > d->le[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, R);
    uint64_t old = atomic_load_explicit(&h->sum_bits, R), upd;
    do {
        double sum;
        memcpy(&sum, &old, sizeof sum);
        sum += v;
        memcpy(&upd, &sum, sizeof upd);
    } while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, upd, R, R));
}

double pgs_hist_sum(const pgs_hist *h)
{
    uint64_t bits = atomic_load_explicit(&h->sum_bits, R);
    double sum;
    memcpy(&sum, &bits, sizeof sum);
    return sum;
}

static void hist_reset(pgs_hist *h)
{
    for (int i = 0; i <= PGS_HIST_MAX_BUCKETS; i++)
        atomic_store_explicit(&h->bucket[i], 0, R);
    atomic_store_explicit(&h->sum_bits, 0, R); /* the bits of 0.0 */
}

/* What options.c accepts for the label option: [A-Za-z0-9_.:-]{1,64}. */
static int label_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > PGS_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("_.:-", s[i])))
            return 0;
    return 1;
}

/* Slots 0..PGS_MAX_LABELS-2 hold one label each, in the order first seen;
 * the last is the overflow, named PGS_OTHER_LABEL. The label "other" itself
 * goes straight to the overflow slot: were it given a slot of its own, the
 * exposition would carry every label="other" series twice once the bound is
 * reached, and Prometheus rejects such a scrape. A label the option parser
 * would refuse (it cannot reach here) goes there too, so that nothing
 * recorded can break the exposition. */
pgs_label_metrics *pgs_metrics_label(const char *label)
{
    pgs_label_metrics *slots = pgs_metrics.labels, *m = NULL;
    int to_other = !label_ok(label) || strcmp(label, PGS_OTHER_LABEL) == 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < PGS_MAX_LABELS - 1 && m == NULL && !to_other; i++) {
        if (!atomic_load(&slots[i].used)) {
            strcpy(slots[i].name, label);
            atomic_store(&slots[i].used, 1);
            m = &slots[i];
        } else if (strcmp(slots[i].name, label) == 0) {
            m = &slots[i];
        }
    }
    if (m == NULL) { /* "other", or the cardinality bound reached */
        m = &slots[PGS_MAX_LABELS - 1];
        if (!atomic_load(&m->used)) {
            strcpy(m->name, PGS_OTHER_LABEL);
            atomic_store(&m->used, 1);
        }
    }
    pthread_mutex_unlock(&lock);
    return m;
}

static void inc(pgs_label_metrics *m, int c, uint64_t n)
{
    atomic_fetch_add_explicit(&m->counter[c], n, R);
}

static void gauge_add(pgs_label_metrics *m, int g, int64_t d)
{
    atomic_fetch_add_explicit(&m->gauge[g], d, R);
}

void pgs_metrics_connect(int ok, double seconds)
{
    atomic_fetch_add_explicit(
        ok ? &pgs_metrics.connections_opened : &pgs_metrics.connections_failed, 1, R);
    hist_observe(&pgs_metrics.connect_time, &pgs_connect_hist_def, seconds);
}

void pgs_metrics_notifications_dropped(uint64_t n)
{
    if (n)
        atomic_fetch_add_explicit(&pgs_metrics.notifications_dropped, n, R);
}

void pgs_metrics_stream_started(pgs_label_metrics *m)
{
    inc(m, C_STARTED, 1);
    gauge_add(m, G_ACTIVE, 1);
}

void pgs_metrics_stream_ended(pgs_label_metrics *m, int end, int reason, double duration_s)
{
    switch (end) {
    case PGS_END_COMPLETED: inc(m, C_COMPLETED, 1); break;
    case PGS_END_CANCELLED: inc(m, C_CANCELLED, 1); break;
    case PGS_END_LIMITED:
        if (reason >= 0 && reason < PGS_LIMIT_N)
            atomic_fetch_add_explicit(&m->limited[reason], 1, R);
        break;
    default: inc(m, C_FAILED, 1); break;
    }
    gauge_add(m, G_ACTIVE, -1);
    hist_observe(&m->hist[H_DURATION], &pgs_hist_defs[H_DURATION], duration_s);
}

void pgs_metrics_first_row(pgs_label_metrics *m, double seconds)
{
    hist_observe(&m->hist[H_TTFR], &pgs_hist_defs[H_TTFR], seconds);
}

void pgs_metrics_received(pgs_label_metrics *m, uint64_t bytes, uint64_t filtered)
{
    if (bytes)
        inc(m, C_BYTES, bytes);
    if (filtered)
        inc(m, C_FILTERED, filtered);
}

void pgs_metrics_chunk(pgs_label_metrics *m, uint64_t rows, uint64_t buffered_bytes)
{
    inc(m, C_CHUNKS, 1);
    hist_observe(&m->hist[H_CHUNK_ROWS], &pgs_hist_defs[H_CHUNK_ROWS], (double)rows);
    hist_observe(&m->hist[H_BUFFER], &pgs_hist_defs[H_BUFFER], (double)buffered_bytes);
}

void pgs_metrics_delivered(pgs_label_metrics *m, uint64_t rows) { inc(m, C_ROWS, rows); }

void pgs_metrics_buffered_delta(pgs_label_metrics *m, int64_t delta)
{
    gauge_add(m, G_BUFFERED, delta);
}

void pgs_metrics_pause(pgs_label_metrics *m)
{
    inc(m, C_PAUSES, 1);
    gauge_add(m, G_PAUSED, 1);
}

void pgs_metrics_resume(pgs_label_metrics *m, double paused_s)
{
    inc(m, C_RESUMES, 1);
    gauge_add(m, G_PAUSED, -1);
    hist_observe(&m->hist[H_PAUSE], &pgs_hist_defs[H_PAUSE], paused_s);
}

void pgs_metrics_pause_timeout(pgs_label_metrics *m) { inc(m, C_PAUSE_TIMEOUTS, 1); }
void pgs_metrics_memory_warning(pgs_label_metrics *m) { inc(m, C_MEM_WARNINGS, 1); }
void pgs_metrics_memory_limit(pgs_label_metrics *m) { inc(m, C_MEM_LIMITS, 1); }

void pgs_metrics_chunk_rows_gauge(pgs_label_metrics *m, int64_t chunk_rows)
{
    atomic_store_explicit(&m->gauge[G_CHUNK_ROWS], chunk_rows, R);
}

/* Pool slots: as labels, the last one the shared overflow "other". */
pgs_pool_metrics *pgs_metrics_pool(const char *label)
{
    pgs_pool_metrics *slots = pgs_metrics.pools, *m = NULL;
    int to_other = !label_ok(label) || strcmp(label, PGS_OTHER_LABEL) == 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < PGS_MAX_POOLS - 1 && m == NULL && !to_other; i++) {
        if (!atomic_load(&slots[i].used)) {
            strcpy(slots[i].name, label);
            atomic_store(&slots[i].used, 1);
            m = &slots[i];
        } else if (strcmp(slots[i].name, label) == 0) {
            m = &slots[i];
        }
    }
    if (m == NULL) {
        m = &slots[PGS_MAX_POOLS - 1];
        if (!atomic_load(&m->used)) {
            strcpy(m->name, PGS_OTHER_LABEL);
            atomic_store(&m->used, 1);
        }
    }
    pthread_mutex_unlock(&lock);
    return m;
}

void pgs_metrics_pool_gauges(pgs_pool_metrics *m, int64_t idle, int64_t in_use, int64_t opening,
                             int64_t waiting, int64_t max_size)
{
    if (idle + in_use + opening)
        atomic_fetch_add_explicit(&m->gauge[PG_SIZE], idle + in_use + opening, R);
    if (idle)
        atomic_fetch_add_explicit(&m->gauge[PG_IDLE], idle, R);
    if (in_use)
        atomic_fetch_add_explicit(&m->gauge[PG_IN_USE], in_use, R);
    if (waiting)
        atomic_fetch_add_explicit(&m->gauge[PG_WAITING], waiting, R);
    if (max_size)
        atomic_fetch_add_explicit(&m->gauge[PG_MAX], max_size, R);
}

void pgs_metrics_pool_acquire(pgs_pool_metrics *m, int ok, int waited, int timed_out,
                              double seconds)
{
    if (ok)
        atomic_fetch_add_explicit(&m->counter[PC_ACQUIRES], 1, R);
    if (waited)
        atomic_fetch_add_explicit(&m->counter[PC_WAITS], 1, R);
    if (timed_out)
        atomic_fetch_add_explicit(&m->counter[PC_TIMEOUTS], 1, R);
    hist_observe(&m->acquire_time, &pgs_pool_acquire_hist_def, seconds);
}

void pgs_metrics_pool_created(pgs_pool_metrics *m)
{
    atomic_fetch_add_explicit(&m->counter[PC_CREATED], 1, R);
}

void pgs_metrics_pool_closed(pgs_pool_metrics *m, int reason)
{
    if (reason >= 0 && reason < PGS_POOL_CLOSE_N)
        atomic_fetch_add_explicit(&m->closed[reason], 1, R);
}

void pgs_metrics_pool_reset(pgs_pool_metrics *m)
{
    atomic_fetch_add_explicit(&m->counter[PC_RESETS], 1, R);
}

static int sqlstate_char(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'); }

void pgs_metrics_sqlstate(const char *sqlstate)
{
    /* The class is two of [0-9A-Z], as the standard defines SQLSTATE. None,
     * or anything else (a server may send any bytes), counts as XX,
     * internal: no byte from the server reaches a label value. */
    char cls[3] = "XX";
    if (sqlstate && sqlstate_char(sqlstate[0]) && sqlstate_char(sqlstate[1]))
        cls[0] = sqlstate[0], cls[1] = sqlstate[1];
    pthread_mutex_lock(&lock);
    int n = atomic_load(&pgs_metrics.nsqlstate), i;
    for (i = 0; i < n; i++)
        if (strcmp(pgs_metrics.sqlstate[i].cls, cls) == 0)
            break;
    if (i == n && n < PGS_MAX_SQLSTATE_CLASSES) {
        strcpy(pgs_metrics.sqlstate[i].cls, cls);
        atomic_store(&pgs_metrics.nsqlstate, n + 1);
    }
    if (i < PGS_MAX_SQLSTATE_CLASSES)
        atomic_fetch_add_explicit(&pgs_metrics.sqlstate[i].n, 1, R);
    pthread_mutex_unlock(&lock);
}

void pgspout_metrics_reset(void)
{
    pthread_mutex_lock(&lock);
    atomic_store(&pgs_metrics.connections_opened, 0);
    atomic_store(&pgs_metrics.connections_failed, 0);
    atomic_store(&pgs_metrics.notifications_dropped, 0);
    hist_reset(&pgs_metrics.connect_time);
    for (int i = 0; i < PGS_MAX_LABELS; i++) {
        pgs_label_metrics *m = &pgs_metrics.labels[i];
        for (int c = 0; c < C_LABEL_N; c++)
            atomic_store(&m->counter[c], 0);
        for (int l = 0; l < PGS_LIMIT_N; l++)
            atomic_store(&m->limited[l], 0);
        for (int h = 0; h < H_LABEL_N; h++)
            hist_reset(&m->hist[h]);
    }
    for (int i = 0; i < PGS_MAX_SQLSTATE_CLASSES; i++)
        atomic_store(&pgs_metrics.sqlstate[i].n, 0);
    for (int i = 0; i < PGS_MAX_POOLS; i++) { /* counters only: gauges describe live pools */
        pgs_pool_metrics *m = &pgs_metrics.pools[i];
        for (int c = 0; c < PC_POOL_N; c++)
            atomic_store(&m->counter[c], 0);
        for (int r = 0; r < PGS_POOL_CLOSE_N; r++)
            atomic_store(&m->closed[r], 0);
        hist_reset(&m->acquire_time);
    }
    pthread_mutex_unlock(&lock);
}
