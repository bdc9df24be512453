/* test_load.c - 64 concurrent streams over 64 threads (one connection each),
 * 100k rows each: every row arrives exactly once and in order (checksum
 * equal to the server's md5(string_agg(...))), and the process-wide metrics
 * add up exactly to what the streams delivered.
 *
 * Under valgrind (~25k rows/s there: 6.4M rows would take 4 min) each
 * stream has 10000 rows: still 64 threads at once, several chunks each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relutil.h"

#define NSTREAMS 64
#define NROWS    tu_scaled(100000L, 10000L)

typedef struct worker {
    pthread_t th;
    pthread_barrier_t *start;
    int index;
    int rc;
    uint64_t rows;
    uint64_t bytes, chunks, peak;
    char hex[33];
    char err[512];
    double secs;
} worker;

static char want_md5[33];

static void *worker_main(void *arg)
{
    worker *w = arg;
    char sql[128];
    rel_series_sql(sql, sizeof sql, NROWS);
    pgspout_conn *c = NULL;
    w->rc = pgspout_connect(tu_dsn(), &c);
    pthread_barrier_wait(w->start); /* every stream runs at the same time */
    if (w->rc != PGSPOUT_OK) {
        snprintf(w->err, sizeof w->err, "connect: %s", pgspout_conn_error(c));
        pgspout_conn_close(c);
        return NULL;
    }
    pgspout_options *o = pgspout_options_new();
    pgspout_options_set(o, "label", "load");
    /* vary the chunk size so that chunk boundaries fall everywhere */
    char cr[16];
    snprintf(cr, sizeof cr, "%d", 97 + w->index * 37);
    pgspout_options_set(o, "chunk_rows", cr);
    if (w->index % 4 == 3)
        pgspout_options_set(o, "adaptive_chunking", "on");
    double t0 = tu_now();
    pgspout_stream *s = NULL;
    w->rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    if (w->rc == PGSPOUT_OK) {
        w->rc = rel_drain_md5(s, &w->rows, w->hex);
        pgspout_stats st = PGSPOUT_STATS_INIT;
        pgspout_stream_stats(s, &st);
        w->bytes = st.bytes_received;
        w->chunks = st.chunks;
        w->peak = st.peak_buffered_bytes;
        if (st.rows_delivered != w->rows || st.state != PGSPOUT_STATE_DONE)
            snprintf(w->err, sizeof w->err, "stats: delivered %llu, state %s",
                     (unsigned long long)st.rows_delivered, pgspout_state_name(st.state));
    }
    w->secs = tu_now() - t0;
    if (w->rc != PGSPOUT_DONE)
        snprintf(w->err, sizeof w->err, "%s: %s", pgspout_code_name(w->rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    pgspout_stream_close(s);
    pgspout_conn_close(c);
    pgspout_options_free(o);
    return NULL;
}

/* Sum of the samples named `name` with the labels (NULL: any); 0 when none. */
static double metric(const tu_expo *e, const char *name, const char *labels)
{
    double v = 0;
    tu_expo_sum(e, name, labels, &v);
    return v;
}

static void test_64_concurrent_streams(void **state)
{
    (void)state;
    pgspout_conn *c = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    char msql[256];
    rel_series_md5_sql(msql, sizeof msql, NROWS);
    char *want = tu_try_scalar(c, msql, 0, NULL);
    assert_non_null(want);
    snprintf(want_md5, sizeof want_md5, "%s", want);
    free(want);
    char *maxc = tu_try_scalar(c, "SHOW max_connections", 0, NULL);
    assert_non_null(maxc);
    if (atoi(maxc) < NSTREAMS + 5)
        fail_msg("the server allows %s connections; this test needs %d", maxc, NSTREAMS + 5);
    free(maxc);
    pgspout_conn_close(c);

    pgspout_metrics_reset();
    static worker w[NSTREAMS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NSTREAMS);
    rel_watchdog(150, "64 concurrent streams");
    double t0 = tu_now();
    for (int i = 0; i < NSTREAMS; i++) {
        w[i] = (worker){.start = &start, .index = i};
        assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < NSTREAMS; i++)
        pthread_join(w[i].th, NULL);
    double took = tu_now() - t0;
    rel_watchdog(0, NULL);
    pthread_barrier_destroy(&start);

    uint64_t rows = 0, bytes = 0, chunks = 0, peak = 0;
    int bad = 0;
    for (int i = 0; i < NSTREAMS; i++) {
        if (w[i].rc != PGSPOUT_DONE || w[i].rows != (uint64_t)NROWS ||
            strcmp(w[i].hex, want_md5) != 0 || w[i].err[0]) {
            printf("  stream %d: %s, %llu rows, md5 %s (want %s) %s\n", i,
                   pgspout_code_name(w[i].rc), (unsigned long long)w[i].rows, w[i].hex, want_md5,
                   w[i].err);
            bad++;
        }
        rows += w[i].rows;
        bytes += w[i].bytes;
        chunks += w[i].chunks;
        if (w[i].peak > peak)
            peak = w[i].peak;
    }
    printf("  %d streams x %ld rows: %llu rows in %.1f s (%.0f rows/s), %llu chunks, "
           "largest stream buffer %llu bytes, %d bad\n",
           NSTREAMS, NROWS, (unsigned long long)rows, took, (double)rows / took,
           (unsigned long long)chunks, (unsigned long long)peak, bad);
    assert_int_equal(bad, 0);

    /* the process-wide metrics add up exactly */
    char *text = pgspout_metrics_prometheus();
    assert_non_null(text);
    tu_expo e;
    if (tu_expo_parse(text, &e))
        fail_msg("malformed exposition: %s", e.err);
    const char *L = "label=\"load\"";
    struct {
        const char *name, *labels;
        double want;
    } checks[] = {
        {"pgspout_rows_total", L, (double)NSTREAMS * NROWS},
        {"pgspout_rows_total", NULL, (double)NSTREAMS * NROWS},
        {"pgspout_streams_started_total", L, NSTREAMS},
        {"pgspout_streams_completed_total", L, NSTREAMS},
        {"pgspout_streams_completed_total", NULL, NSTREAMS},
        {"pgspout_streams_failed_total", NULL, 0},
        {"pgspout_streams_cancelled_total", NULL, 0},
        {"pgspout_streams_limited_total", NULL, 0},
        {"pgspout_bytes_total", L, (double)bytes},
        {"pgspout_chunks_total", L, (double)chunks},
        {"pgspout_connections_opened_total", NULL, NSTREAMS},
        {"pgspout_connections_failed_total", NULL, 0},
        {"pgspout_active_streams", L, 0},
        {"pgspout_buffered_bytes", L, 0},
        {"pgspout_stream_duration_seconds_count", L, NSTREAMS},
        {"pgspout_time_to_first_row_seconds_count", L, NSTREAMS},
        {"pgspout_chunk_rows_count", L, (double)chunks},
    };
    int mism = 0;
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        double got = metric(&e, checks[i].name, checks[i].labels);
        if (got != checks[i].want) {
            printf("  metric %s{%s} = %.0f, want %.0f\n", checks[i].name,
                   checks[i].labels ? checks[i].labels : "*", got, checks[i].want);
            mism++;
        }
    }
    /* the chunk_rows histogram sums to the rows read */
    double chunk_rows_sum = metric(&e, "pgspout_chunk_rows_sum", L);
    if (chunk_rows_sum != (double)rows) {
        printf("  metric pgspout_chunk_rows_sum{load} = %.0f, want %llu\n", chunk_rows_sum,
               (unsigned long long)rows);
        mism++;
    }
    tu_expo_free(&e);
    pgspout_free(text);
    char *js = pgspout_metrics_json();
    assert_non_null(js);
    assert_true(rel_contains(js, "\"load\""));
    pgspout_free(js);
    assert_int_equal(mism, 0);
}

int main(void)
{
    int gate = tu_db_gate("test_load");
    if (gate >= 0)
        return gate;
    setvbuf(stdout, NULL, _IOLBF, 0);
    rel_filters();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64_concurrent_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
