/* test_export.c - Prometheus and JSON export of the metrics store (no
 * server): observations are fed through the internal recorder (metrics.h)
 * and read back through the public exporters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_store.h"
#include "pgspout.h"
#include "testutil.h"

/* ------------------------------------------------ exposition validity */

/* The label pairs of a raw label text in a canonical order (sorted), so
 * that {a="1",b="2"} and {b="2",a="1"} compare equal. Splits at commas
 * outside quoted values. */
static void canonical_labels(const char *raw, char *out, size_t outn)
{
    char pairs[16][256];
    int np = 0;
    const char *p = raw;
    while (*p && np < 16) {
        const char *start = p;
        int inq = 0;
        while (*p && (inq || *p != ',')) {
            if (inq && *p == '\\' && p[1])
                p++;
            else if (*p == '"')
                inq = !inq;
            p++;
        }
        snprintf(pairs[np++], sizeof pairs[0], "%.*s", (int)(p - start), start);
        if (*p == ',')
            p++;
    }
    assert_true(*p == 0); /* no sample of ours has 16 labels */
    qsort(pairs, (size_t)np, sizeof pairs[0], (int (*)(const void *, const void *))strcmp);
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < np; i++)
        n += (size_t)snprintf(out + n, outn - n, "%s%s", i ? "\x1f" : "", pairs[i]);
    assert_true(n < outn);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* What Prometheus demands of a scrape beyond what tu_expo_parse checks
 * (syntax, at most one HELP and one TYPE per family and both before its
 * samples, contiguous families, histograms cumulative with +Inf == _count
 * and a _sum): no two samples with the same name and label set, HELP and
 * TYPE for every family, and every pgspout histogram series with exactly
 * nb+1 buckets. Returns 0, or -1 with why set. */
static int exposition_problem(const tu_expo *e, char *why, size_t whyn)
{
    char **keys = calloc((size_t)e->ns + 1, sizeof *keys);
    assert_non_null(keys);
    for (int i = 0; i < e->ns; i++) {
        char canon[600];
        canonical_labels(e->s[i].labels, canon, sizeof canon);
        size_t kn = strlen(e->s[i].name) + strlen(canon) + 2;
        keys[i] = malloc(kn);
        assert_non_null(keys[i]);
        snprintf(keys[i], kn, "%s\x1e%s", e->s[i].name, canon);
    }
    qsort(keys, (size_t)e->ns, sizeof *keys, cmp_str);
    int dups = 0;
    for (int i = 1; i < e->ns; i++)
        if (!strcmp(keys[i - 1], keys[i]) && dups++ == 0) {
            for (char *c = keys[i]; *c; c++)
                *c = *c == '\x1e' ? ' ' : *c == '\x1f' ? ',' : *c;
            snprintf(why, whyn, "duplicate series, e.g. %s", keys[i]);
        }
    for (int i = 0; i < e->ns; i++)
        free(keys[i]);
    free(keys);
    if (dups) {
        size_t n = strlen(why);
        snprintf(why + n, whyn - n, " (%d duplicates)", dups);
        return -1;
    }

    for (int f = 0; f < e->nf; f++)
        if (!e->f[f].has_help || !e->f[f].type[0]) {
            snprintf(why, whyn, "family %s without its %s line", e->f[f].name,
                     e->f[f].has_help ? "TYPE" : "HELP");
            return -1;
        }

    const pgs_hist_def *defs[H_LABEL_N + 1];
    for (int h = 0; h < H_LABEL_N; h++)
        defs[h] = &pgs_hist_defs[h];
    defs[H_LABEL_N] = &pgs_connect_hist_def;
    for (int h = 0; h <= H_LABEL_N; h++) {
        char cname[160], bname[160];
        snprintf(cname, sizeof cname, "pgspout_%s_count", defs[h]->name);
        snprintf(bname, sizeof bname, "pgspout_%s_bucket", defs[h]->name);
        int counts = 0, buckets = 0;
        for (int i = 0; i < e->ns; i++) {
            counts += !strcmp(e->s[i].name, cname);
            buckets += !strcmp(e->s[i].name, bname);
        }
        if (buckets != counts * (defs[h]->nb + 1)) {
            snprintf(why, whyn, "%s: %d buckets for %d series of %d buckets", defs[h]->name,
                     buckets, counts, defs[h]->nb + 1);
            return -1;
        }
    }
    return 0;
}

/* Parse the current exposition and check it as exposition_problem does. */
static tu_expo parse_checked(void)
{
    char *text = pgspout_metrics_prometheus();
    assert_non_null(text);
    tu_expo e;
    if (tu_expo_parse(text, &e)) {
        int line = 0; /* show the line the parser names, if it names one */
        const char *l = text;
        if (sscanf(e.err, "line %d", &line) == 1)
            for (int i = 1; i < line && l; i++)
                l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL;
        fail_msg("exposition does not parse: %s%s%.*s", e.err, line && l ? "\n  at: " : "",
                 line && l ? (int)strcspn(l, "\n") : 0, line && l ? l : "");
    }
    char why[1024];
    if (exposition_problem(&e, why, sizeof why))
        fail_msg("invalid exposition: %s", why);
    pgspout_free(text);
    return e;
}

/* One stream's worth of observations, touching every per-label family. */
static void feed(pgs_label_metrics *m)
{
    pgs_metrics_stream_started(m);
    pgs_metrics_first_row(m, 0.003);
    pgs_metrics_chunk(m, 10, 2048);
    pgs_metrics_chunk_rows_gauge(m, 10);
    pgs_metrics_received(m, 100, 1);
    pgs_metrics_delivered(m, 9);
    pgs_metrics_pause(m);
    pgs_metrics_resume(m, 0.02);
    pgs_metrics_stream_ended(m, PGS_END_COMPLETED, -1, 0.05);
}

/* Samples of name whose label="..." is exactly label. */
static int series_of(const tu_expo *e, const char *name, const char *label, double *v)
{
    char want[160];
    snprintf(want, sizeof want, "label=\"%s\"", label);
    return tu_expo_sum(e, name, want, v);
}

/* Occurrences of needle in hay. */
static int occurrences(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* exposition_problem finds what tu_expo_parse lets through. */
static void test_exposition_check_self_check(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* the same series twice, labels in another order */
        "# HELP x_total T.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"2\"} 1\n"
        "x_total{b=\"2\",a=\"1\"} 1\n",
        /* a family announced without its TYPE */
        "# HELP x_total T.\n# TYPE x_total counter\nx_total 1\n# HELP y_total "
        "Y.\n",
        /* a pgspout histogram series short of buckets */
        "# HELP pgspout_chunk_rows R.\n# TYPE pgspout_chunk_rows histogram\n"
        "pgspout_chunk_rows_bucket{le=\"1\"} "
        "0\npgspout_chunk_rows_bucket{le=\"+Inf\"} 0\n"
        "pgspout_chunk_rows_sum 0\npgspout_chunk_rows_count 0\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tu_expo e;
        char why[1024];
        if (tu_expo_parse(bad[i], &e))
            fail_msg("bad #%zu: the parser rejects it already (%s); test nothing", i, e.err);
        if (exposition_problem(&e, why, sizeof why) == 0)
            fail_msg("exposition_problem accepted bad exposition #%zu", i);
        print_message("bad #%zu: %s\n", i, why);
        tu_expo_free(&e);
    }
    const char *good = "# HELP x_total T.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"2\"} 1\n"
                       "x_total{a=\"1\",b=\"3\"} 1\nx_total{a=\"1\"} 1\nx_total 2\n";
    tu_expo e;
    char why[1024];
    assert_int_equal(tu_expo_parse(good, &e), 0);
    if (exposition_problem(&e, why, sizeof why))
        fail_msg("exposition_problem rejected a good exposition: %s", why);
    tu_expo_free(&e);
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
    tu_expo e = parse_checked();
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
    tu_expo e = parse_checked();
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
    pgs_metrics_notifications_dropped(7);
    pgspout_metrics_reset();
    tu_expo e = parse_checked();
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

/* pgspout_notifications_dropped_total: one series, no label, in both
 * formats; adds up, and reset zeroes it. */
static void test_notifications_dropped(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgs_metrics_notifications_dropped(3);
    pgs_metrics_notifications_dropped(0);
    pgs_metrics_notifications_dropped(2);
    char *text = pgspout_metrics_prometheus();
    assert_non_null(text);
    assert_non_null(strstr(text, "\n# HELP pgspout_notifications_dropped_total Server "
                                 "notifications (LISTEN/NOTIFY) received on pgspout connections "
                                 "and dropped\n# TYPE pgspout_notifications_dropped_total "
                                 "counter\npgspout_notifications_dropped_total 5\n"));
    pgspout_free(text);
    tu_expo e = parse_checked();
    double v;
    assert_int_equal(tu_expo_sum(&e, "pgspout_notifications_dropped_total", NULL, &v), 1);
    assert_true(v == 5);
    const tu_family *f = tu_expo_family(&e, "pgspout_notifications_dropped_total");
    assert_non_null(f);
    assert_string_equal(f->type, "counter");
    tu_expo_free(&e);
    char *js = pgspout_metrics_json();
    assert_non_null(js);
    if (!tu_json_valid(js, strlen(js)))
        fail_msg("metrics JSON is not valid: %s", js);
    assert_int_equal(occurrences(js, "\"notifications_dropped_total\":5,"), 1);
    pgspout_free(js);

    pgspout_metrics_reset();
    e = parse_checked();
    assert_int_equal(tu_expo_sum(&e, "pgspout_notifications_dropped_total", NULL, &v), 1);
    assert_true(v == 0);
    tu_expo_free(&e);
    js = pgspout_metrics_json();
    assert_int_equal(occurrences(js, "\"notifications_dropped_total\":0,"), 1);
    pgspout_free(js);
}

/* Labels made of every allowed character ([A-Za-z0-9_.:-]), at the maximum
 * length (64) and of one character, each come out as exactly one series of
 * their own in a valid exposition and as one key of valid JSON. */
static void test_adversarial_labels(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    static const char allowed[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-";
    assert_int_equal(strlen(allowed), 66);
    char first64[65], last64[65];
    snprintf(first64, sizeof first64, "%.64s", allowed);
    snprintf(last64, sizeof last64, "%s", allowed + 2);
    assert_int_equal(strlen(last64), PGS_LABEL_MAX);
    const char *labels[] = {first64, last64, "-", ".", ":", "_", "0", "-.:_", "a-b.c:d_e"};
    size_t nl = sizeof labels / sizeof labels[0];
    for (size_t i = 0; i < nl; i++)
        feed(pgs_metrics_label(labels[i]));
    tu_expo e = parse_checked();
    double v;
    for (size_t i = 0; i < nl; i++) {
        if (series_of(&e, "pgspout_rows_total", labels[i], &v) != 1 || v != 9)
            fail_msg("label \"%s\": want one rows_total series of 9", labels[i]);
        if (series_of(&e, "pgspout_chunk_rows_count", labels[i], &v) != 1 || v != 1)
            fail_msg("label \"%s\": want one chunk_rows_count series of 1", labels[i]);
    }
    tu_expo_free(&e);

    char *js = pgspout_metrics_json();
    assert_non_null(js);
    if (!tu_json_valid(js, strlen(js)))
        fail_msg("metrics JSON is not valid: %s", js);
    for (size_t i = 0; i < nl; i++) {
        char key[80];
        snprintf(key, sizeof key, "\"%s\":{", labels[i]);
        if (occurrences(js, key) != 1)
            fail_msg("JSON: %d objects for label \"%s\"", occurrences(js, key), labels[i]);
    }
    pgspout_free(js);
}

/* A histogram observation that is not finite (a clock gone wrong) cannot
 * break either format: JSON has no NaN or Infinity. */
static void test_non_finite_observations(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgs_label_metrics *m = pgs_metrics_label("unit_nonfinite");
    pgs_metrics_first_row(m, NAN);
    pgs_metrics_resume(m, INFINITY);
    pgs_metrics_stream_ended(m, PGS_END_FAILED, -1, -INFINITY);
    pgs_metrics_connect(1, NAN);
    pgs_metrics_first_row(m, 0.5);
    tu_expo e = parse_checked();
    double v;
    assert_int_equal(series_of(&e, "pgspout_time_to_first_row_seconds_sum", "unit_nonfinite", &v),
                     1);
    assert_true(v == 0.5); /* the finite observation, alone */
    tu_expo_free(&e);
    char *js = pgspout_metrics_json();
    assert_non_null(js);
    if (!tu_json_valid(js, strlen(js)))
        fail_msg("metrics JSON is not valid: %s", js);
    pgspout_free(js);
}

/* A server may send anything as a SQLSTATE: the errors_total series stay
 * valid label values and every error is counted. */
static void test_bad_sqlstate(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgs_metrics_sqlstate("\"\\\n{}");
    pgs_metrics_sqlstate("a\"");
    pgs_metrics_sqlstate("\\");
    pgs_metrics_sqlstate("");
    pgs_metrics_sqlstate("42P01");
    tu_expo e = parse_checked();
    double v;
    assert_true(tu_expo_sum(&e, "pgspout_errors_total", NULL, &v) >= 2);
    assert_true(v == 5);
    assert_int_equal(tu_expo_sum(&e, "pgspout_errors_total", "sqlstate_class=\"42\"", &v), 1);
    assert_true(v == 1);
    tu_expo_free(&e);
    char *js = pgspout_metrics_json();
    assert_non_null(js);
    if (!tu_json_valid(js, strlen(js)))
        fail_msg("metrics JSON is not valid: %s", js);
    pgspout_free(js);
}

/* Under concurrent recording every scrape stays valid: a histogram's +Inf
 * bucket equals its _count even while observations land. */
static atomic_int hammer_stop;
static void *hammer(void *arg)
{
    pgs_label_metrics *m = arg;
    while (!atomic_load(&hammer_stop)) {
        pgs_metrics_chunk(m, 50, 4096);
        pgs_metrics_first_row(m, 0.01);
        pgs_metrics_connect(1, 0.002);
    }
    return NULL;
}

static void test_scrape_while_recording(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgs_label_metrics *m = pgs_metrics_label("unit_race");
    pthread_t th;
    atomic_store(&hammer_stop, 0);
    assert_int_equal(pthread_create(&th, NULL, hammer, m), 0);
    int bad = 0, n = (int)tu_scaled(100, 10);
    for (int i = 0; i < n; i++) {
        char *text = pgspout_metrics_prometheus();
        tu_expo e;
        if (tu_expo_parse(text, &e)) {
            if (bad++ < 3)
                print_error("scrape %d: %s\n", i, e.err);
        }
        tu_expo_free(&e);
        pgspout_free(text);
        char *js = pgspout_metrics_json();
        if (!tu_json_valid(js, strlen(js)))
            bad++;
        pgspout_free(js);
    }
    atomic_store(&hammer_stop, 1);
    pthread_join(th, NULL);
    if (bad)
        fail_msg("%d of %d scrapes taken during recording were invalid", bad, n);
}

/* Issue 10, item 8: a user label named "other" and the overflow bucket
 * past the label bound are one series, not two. Runs last: label slots are
 * process-wide and this fills them. */
static void test_label_other_and_overflow(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    int started = 0;
    feed(pgs_metrics_label("other")), started++; /* before the bound is reached */
    for (int i = 0; i < 2 * PGS_MAX_LABELS; i++) {
        char label[32];
        snprintf(label, sizeof label, "ovf_%d", i);
        feed(pgs_metrics_label(label)), started++;
    }
    feed(pgs_metrics_label("other")), started++; /* and after */
    tu_expo e = parse_checked();
    double v, total;
    assert_int_equal(series_of(&e, "pgspout_streams_started_total", "other", &v), 1);
    int series = tu_expo_sum(&e, "pgspout_streams_started_total", NULL, &total);
    assert_true(series <= PGS_MAX_LABELS);
    assert_true(total == started); /* nothing lost or counted twice */
    /* the overflow holds both "other" streams and every label past the bound */
    assert_true(v >= 2 + PGS_MAX_LABELS);
    assert_int_equal(series_of(&e, "pgspout_buffer_bytes_count", "other", &v), 1);
    assert_int_equal(tu_expo_sum(&e, "pgspout_streams_limited_total", "label=\"other\"", &v),
                     PGS_LIMIT_N);
    tu_expo_free(&e);

    char *js = pgspout_metrics_json();
    assert_non_null(js);
    if (!tu_json_valid(js, strlen(js)))
        fail_msg("metrics JSON is not valid: %s", js);
    assert_int_equal(occurrences(js, "\"other\":{"), 1);
    pgspout_free(js);
}

/* PGSPOUT_TEST_FILTER=test_name runs one test (a cmocka pattern). */
int main(void)
{
    const char *filter = getenv("PGSPOUT_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_check_self_check),
        cmocka_unit_test(test_scrape_while_recording), /* early: few labels, quick scrapes */
        cmocka_unit_test(test_bucket_bounds_exact),
        cmocka_unit_test(test_counters_and_json),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_notifications_dropped),
        cmocka_unit_test(test_adversarial_labels),
        cmocka_unit_test(test_non_finite_observations),
        cmocka_unit_test(test_bad_sqlstate),
        cmocka_unit_test(test_label_other_and_overflow), /* last: fills the label slots */
    };
    return cmocka_run_group_tests_name("export", tests, NULL, NULL);
}
