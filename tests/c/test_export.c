/* test_export.c - Prometheus and JSON export of the metrics store (no
 * server): observations are fed through the internal recorder (metrics.h)
 * and read back through the public exporters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_store.h"
#include "pgspout.h"
#include "testutil.h"

static tu_expo parse_now(void)
{
    char *text = pgspout_metrics_prometheus();
    assert_non_null(text);
    tu_expo e;
    if (tu_expo_parse(text, &e))
        fail_msg("exposition does not parse: %s\n%s", e.err, text);
    pgspout_free(text);
    return e;
}

/* Every le label is exactly one of the histogram's bucket bounds (no
 * precision lost in the rendering), and a value exactly on a bound is
 * counted in that bound's bucket. */
static void test_bucket_bounds_exact(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgs_label_metrics *m = pgs_metrics_label("unit_export");
    assert_non_null(m);
    /* one observation exactly on each bound of every per-label histogram
     * we can feed: chunk_rows and buffer_bytes (pgs_metrics_chunk) */
    const pgs_hist_def *rows_def = &pgs_hist_defs[H_CHUNK_ROWS];
    const pgs_hist_def *buf_def = &pgs_hist_defs[H_BUFFER];
    int n = rows_def->nb > buf_def->nb ? rows_def->nb : buf_def->nb;
    for (int i = 0; i < n; i++) {
        double r = rows_def->le[i < rows_def->nb ? i : rows_def->nb - 1];
        double b = buf_def->le[i < buf_def->nb ? i : buf_def->nb - 1];
        pgs_metrics_chunk(m, (uint64_t)r, (uint64_t)b);
    }
    tu_expo e = parse_now();
    int bad = 0;
    for (int h = 0; h < H_LABEL_N; h++) {
        const pgs_hist_def *d = &pgs_hist_defs[h];
        char bucket[160];
        snprintf(bucket, sizeof bucket, "pgspout_%s_bucket", d->name);
        for (int i = 0; i < e.ns; i++) {
            if (strcmp(e.s[i].name, bucket) || !strstr(e.s[i].labels, "unit_export"))
                continue;
            const char *le = strstr(e.s[i].labels, "le=\"");
            assert_non_null(le);
            le += 4;
            if (!strncmp(le, "+Inf", 4))
                continue;
            double v = strtod(le, NULL);
            int found = 0;
            for (int k = 0; k < d->nb; k++)
                found |= d->le[k] == v;
            if (!found) {
                print_error("%s{%s}: le is not one of the bucket bounds (rendered with lost "
                            "precision?)\n",
                            bucket, e.s[i].labels);
                bad++;
            }
        }
    }
    /* cumulative count at bound k is k+1: each observation sits on its bound */
    for (int which = 0; which < 2; which++) {
        const pgs_hist_def *d = which ? buf_def : rows_def;
        char bucket[160];
        snprintf(bucket, sizeof bucket, "pgspout_%s_bucket", d->name);
        int k = 0;
        for (int i = 0; i < e.ns; i++) {
            if (strcmp(e.s[i].name, bucket) || !strstr(e.s[i].labels, "unit_export") ||
                strstr(e.s[i].labels, "+Inf"))
                continue;
            /* observation i sat on bound min(i, nb-1) */
            int want_cum = k == d->nb - 1 ? n : k + 1;
            if (k < d->nb && e.s[i].value != (double)want_cum) {
                print_error("%s{%s} = %g, want %d\n", bucket, e.s[i].labels, e.s[i].value,
                            want_cum);
                bad++;
            }
            k++;
        }
    }
    tu_expo_free(&e);
    if (bad)
        fail_msg("%d histogram bucket(s) rendered wrong", bad);
}

/* Counters, gauges and the JSON snapshot agree after a scripted sequence. */
static void test_counters_and_json(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgs_label_metrics *m = pgs_metrics_label("unit_json");
    pgs_metrics_stream_started(m);
    pgs_metrics_first_row(m, 0.002);
    pgs_metrics_chunk(m, 100, 65536);
    pgs_metrics_received(m, 5000, 3);
    pgs_metrics_buffered_delta(m, 65536);
    pgs_metrics_delivered(m, 100);
    pgs_metrics_pause(m);
    pgs_metrics_resume(m, 0.25);
    pgs_metrics_buffered_delta(m, -65536);
    pgs_metrics_stream_ended(m, PGS_END_COMPLETED, -1, 0.5);
    pgs_metrics_stream_started(m);
    pgs_metrics_stream_ended(m, PGS_END_LIMITED, PGS_LIMIT_ROWS, 0.1);
    pgs_metrics_sqlstate("22012");
    pgs_metrics_sqlstate("22003");
    pgs_metrics_sqlstate(NULL);
    tu_expo e = parse_now();
    const char *L = "label=\"unit_json\"";
    double v;
    static const struct {
        const char *name;
        const char *labels;
        double want;
    } want[] = {
        {"pgspout_streams_started_total", NULL, 2},
        {"pgspout_streams_completed_total", NULL, 1},
        {"pgspout_streams_failed_total", NULL, 0},
        {"pgspout_rows_total", NULL, 100},
        {"pgspout_bytes_total", NULL, 5000},
        {"pgspout_rows_filtered_total", NULL, 3},
        {"pgspout_chunks_total", NULL, 1},
        {"pgspout_pauses_total", NULL, 1},
        {"pgspout_resumes_total", NULL, 1},
        {"pgspout_active_streams", NULL, 0},
        {"pgspout_paused_streams", NULL, 0},
        {"pgspout_buffered_bytes", NULL, 0},
        {"pgspout_stream_duration_seconds_count", NULL, 2},
        {"pgspout_stream_duration_seconds_sum", NULL, 0.6},
        {"pgspout_pause_duration_seconds_sum", NULL, 0.25},
        {"pgspout_time_to_first_row_seconds_count", NULL, 1},
        {"pgspout_streams_limited_total", "reason=\"max_rows\"", 1},
        {"pgspout_streams_limited_total", "reason=\"max_memory\"", 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char labels[128];
        snprintf(labels, sizeof labels, "%s%s%s", L, want[i].labels ? "," : "",
                 want[i].labels ? want[i].labels : "");
        if (tu_expo_sum(&e, want[i].name, labels, &v) != 1)
            fail_msg("no single sample %s{%s}", want[i].name, labels);
        if (fabs(v - want[i].want) > 1e-9)
            fail_msg("%s{%s} = %g, want %g", want[i].name, labels, v, want[i].want);
    }
    assert_int_equal(tu_expo_sum(&e, "pgspout_errors_total", "sqlstate_class=\"22\"", &v), 1);
    assert_true(v == 2);
    assert_int_equal(tu_expo_sum(&e, "pgspout_errors_total", "sqlstate_class=\"XX\"", &v), 1);
    assert_true(v == 1);
    tu_expo_free(&e);

    char *js = pgspout_metrics_json();
    assert_non_null(js);
    if (!tu_json_valid(js, strlen(js)))
        fail_msg("metrics JSON is not valid: %s", js);
    assert_non_null(strstr(js, "unit_json"));
    pgspout_free(js);
}

/* After reset every counter and histogram is zero, and the text is still
 * a valid exposition. */
static void test_reset(void **state)
{
    (void)state;
    pgs_label_metrics *m = pgs_metrics_label("unit_reset");
    pgs_metrics_stream_started(m);
    pgs_metrics_chunk(m, 10, 10);
    pgs_metrics_received(m, 10, 0);
    pgs_metrics_connect(1, 0.01);
    pgs_metrics_connect(0, 0.02);
    pgspout_metrics_reset();
    tu_expo e = parse_now();
    for (int i = 0; i < e.ns; i++) {
        const tu_family *f = tu_expo_family(&e, e.s[i].name);
        for (int k = 0; k < e.nf && !f; k++)
            if (!strncmp(e.s[i].name, e.f[k].name, strlen(e.f[k].name)))
                f = &e.f[k];
        if (f && !strcmp(f->type, "gauge"))
            continue; /* gauges of live streams stay */
        if (e.s[i].value != 0)
            fail_msg("after reset %s{%s} = %g", e.s[i].name, e.s[i].labels, e.s[i].value);
    }
    tu_expo_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bounds_exact),
        cmocka_unit_test(test_counters_and_json),
        cmocka_unit_test(test_reset),
    };
    return cmocka_run_group_tests_name("export", tests, NULL, NULL);
}
