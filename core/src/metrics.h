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

#endif
