/* options.h - the parsed form of pgspout_options. */
#ifndef PGSPOUT_OPTIONS_H
#define PGSPOUT_OPTIONS_H

#include "pgspout.h"
#include <stdint.h>

#define PGS_LABEL_MAX 64
/* a snapshot id as pg_export_snapshot() gives it ("00000003-0000001B-1") */
#define PGS_SNAPSHOT_MAX 64
/* cancel_timeout's default: generous, so that a cancel request still gets
 * through on a loaded machine (a new connection to the postmaster, which
 * forks a process for it). */
#define PGS_CANCEL_TIMEOUT_MS 5000
/* pool defaults (pgspout_pool_new) */
#define PGS_POOL_MAX_SIZE           10
#define PGS_POOL_MAX_LIFETIME_MS    (30 * 60 * 1000)
#define PGS_POOL_ACQUIRE_TIMEOUT_MS 30000

struct pgspout_options {
    /* stream */
    int64_t chunk_rows;
    int64_t chunk_bytes;
    int adaptive_chunking;
    int64_t chunk_rows_min;
    int64_t chunk_rows_max;
    int64_t max_memory;
    double memory_warn;
    double memory_fail;
    int64_t max_rows;   /* 0 = none */
    int64_t timeout_ms; /* 0 = none */
    int64_t statement_timeout_ms;
    int64_t cancel_timeout_ms;
    int64_t pause_timeout_ms; /* 0 = none */
    int on_pause_timeout_cancel;
    double max_rate; /* rows/s, 0 = none */
    char label[PGS_LABEL_MAX + 1];
    int64_t expected_rows;
    int metrics;
    int64_t progress_rows;
    int64_t progress_interval_ms;
    int64_t idle_timeout_ms;
    int pool;   /* registry: take the connection from the registry's pool */
    int arrow;  /* read through pgspout_stream_arrow only: binary results */
    int binary; /* rows in binary when every column's type allows */
    int json;   /* rows read as JSON: describe first, types from the catalog */
    /* not a key: set by the registry on its copy of the options when the
     * stream's pooled connection goes back at the stream's end, so that
     * the pool's reset may follow the statement (stream.c) */
    int pool_one_stream;
    char snapshot[PGS_SNAPSHOT_MAX + 1]; /* "" = none: import it (stream.c) */
    /* connection (-1 = not set) */
    int64_t connect_timeout_ms;
    int64_t keepalives_idle_ms;
    int64_t keepalives_interval_ms;
    int64_t keepalives_count;
    int64_t tcp_user_timeout_ms;
    char application_name[PGS_LABEL_MAX + 1];
    /* pool (pgspout_pool_new) */
    int64_t max_size;
    int64_t min_idle;
    int64_t max_lifetime_ms;    /* 0 = none */
    int64_t acquire_timeout_ms; /* 0 = wait without limit */
    /* hooks */
    pgspout_filter_fn filter;
    void *filter_ud;
    pgspout_progress_fn progress;
    void *progress_ud;
    char err[256];
};

/* The defaults, as pgspout_options_new gives them. */
void pgs_options_defaults(pgspout_options *o);

/* Unit parsers, exposed for the unit tests. Return 0 or -1. */
int pgs_parse_size(const char *s, int64_t *out);
int pgs_parse_duration_ms(const char *s, int64_t *out);
int pgs_parse_bool(const char *s, int *out);

#endif
