/* metrics.h - process-wide metrics recorded by connections and streams.
 * Lock-free atomics on every path a stream takes per chunk; a mutex only to
 * find or add a label (once per stream) and a SQLSTATE class (per error). */
#ifndef PGSPOUT_METRICS_H
#define PGSPOUT_METRICS_H

#include <stdint.h>

typedef struct pgs_label_metrics pgs_label_metrics;

/* How a stream ended: exactly one per started stream. */
enum { PGS_END_COMPLETED, PGS_END_FAILED, PGS_END_CANCELLED, PGS_END_LIMITED };
/* Why a stream was limited (PGS_END_LIMITED). */
enum { PGS_LIMIT_ROWS, PGS_LIMIT_MEMORY, PGS_LIMIT_TIMEOUT, PGS_LIMIT_PAUSE_TIMEOUT, PGS_LIMIT_N };

/* The slot for label (bounded: past the limit, the shared "other" slot). */
pgs_label_metrics *pgs_metrics_label(const char *label);

void pgs_metrics_connect(int ok, double seconds);
void pgs_metrics_stream_started(pgs_label_metrics *m);
void pgs_metrics_stream_ended(pgs_label_metrics *m, int end, int limit_reason, double duration_s);
void pgs_metrics_first_row(pgs_label_metrics *m, double seconds);
/* A chunk was read: its size and what the buffer holds. */
void pgs_metrics_chunk(pgs_label_metrics *m, uint64_t rows, uint64_t buffered_bytes);
/* Value bytes received and rows filtered since the last call. */
void pgs_metrics_received(pgs_label_metrics *m, uint64_t bytes, uint64_t filtered);
/* Rows handed to the caller (flushed per chunk). */
void pgs_metrics_delivered(pgs_label_metrics *m, uint64_t rows);
void pgs_metrics_buffered_delta(pgs_label_metrics *m, int64_t delta);
void pgs_metrics_pause(pgs_label_metrics *m);
void pgs_metrics_resume(pgs_label_metrics *m, double paused_s);
void pgs_metrics_pause_timeout(pgs_label_metrics *m);
void pgs_metrics_memory_warning(pgs_label_metrics *m);
void pgs_metrics_memory_limit(pgs_label_metrics *m);
void pgs_metrics_sqlstate(const char *sqlstate);
/* Server notifications (LISTEN/NOTIFY) received on pgspout connections and
 * dropped: process-wide, no label. */
void pgs_metrics_notifications_dropped(uint64_t n);
void pgs_metrics_chunk_rows_gauge(pgs_label_metrics *m, int64_t chunk_rows);

/* Connection pools (pool.c), by the pool's label option: pools with the same
 * label share series (their gauges add up); bounded like stream labels. */
typedef struct pgs_pool_metrics pgs_pool_metrics;
/* Why a pool closed a connection: pgspout_pool_connections_closed_total{reason}. */
enum {
    PGS_POOL_CLOSE_BROKEN,        /* unusable at release or checkout (lost, killed, desynced) */
    PGS_POOL_CLOSE_RESET_FAILED,  /* ROLLBACK or the session reset failed */
    PGS_POOL_CLOSE_CANCEL_FAILED, /* a cancel may still land on a later query */
    PGS_POOL_CLOSE_IDLE_TIMEOUT,
    PGS_POOL_CLOSE_MAX_LIFETIME,
    PGS_POOL_CLOSE_POOL_CLOSED,
    PGS_POOL_CLOSE_FORK,      /* a fork child let go of its parent's connections */
    PGS_POOL_CLOSE_DISCARDED, /* given back mid-statement while drains were busy */
    PGS_POOL_CLOSE_N
};
pgs_pool_metrics *pgs_metrics_pool(const char *label);
/* Gauge deltas: idle, in use, being opened, waiting acquires, max_size. */
void pgs_metrics_pool_gauges(pgs_pool_metrics *m, int64_t idle, int64_t in_use, int64_t opening,
                             int64_t waiting, int64_t max_size);
/* One acquire call ended: got a connection or not, had to queue, timed out,
 * and how long it took. */
void pgs_metrics_pool_acquire(pgs_pool_metrics *m, int ok, int waited, int timed_out,
                              double seconds);
void pgs_metrics_pool_created(pgs_pool_metrics *m);
void pgs_metrics_pool_closed(pgs_pool_metrics *m, int reason);
void pgs_metrics_pool_reset(pgs_pool_metrics *m);

#endif
