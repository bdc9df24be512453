/* test_handles.c - what the generated bindings build on: handing rows out one
 * by one after converting a whole chunk (PGSPOUT_HANDOUT), releasing a
 * connection in any order against its stream (pgspout_conn_release), the
 * column-kind classifier checked against the server's catalog, and the stats
 * field table checked against the struct and the JSON. Needs
 * PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static pgspout_stream *open_ok(pgspout_conn *c, const char *sql, pgspout_options *o)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("open %s: %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    return s;
}

static double rows_total(const char *label)
{
    char *text = pgspout_metrics_prometheus();
    tu_expo e;
    if (tu_expo_parse(text, &e))
        fail_msg("exposition: %s", e.err);
    char want[96];
    snprintf(want, sizeof want, "label=\"%s\"", label);
    double v = 0;
    tu_expo_sum(&e, "pgspout_rows_total", want, &v);
    tu_expo_free(&e);
    pgspout_free(text);
    return v;
}

static uint64_t delivered(const pgspout_stream *s)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    return st.rows_delivered;
}

/* Backends of this database with the given application_name, seen from c. */
static long backends(pgspout_conn *c, const char *app)
{
    const char *p[] = {app};
    char *v =
        tu_scalar(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", 1, p);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

static pgspout_conn *connect_as(const char *app)
{
    char extra[96];
    snprintf(extra, sizeof extra, "application_name=%s", app);
    char *dsn = tu_dsn_with(extra);
    pgspout_conn *c = NULL;
    assert_int_equal(pgspout_connect(dsn, &c), PGSPOUT_OK);
    free(dsn);
    return c;
}

/* Poll until the server has forgotten the backends of app (its exit is
 * asynchronous to our close); bounded generously for a busy machine. */
static long backends_settled(pgspout_conn *c, const char *app, long want)
{
    long n = -1;
    for (int i = 0; i < 300 && (n = backends(c, app)) != want; i++)
        tu_sleep_ms(50);
    return n;
}

static void *cancel_main(void *arg)
{
    pgspout_stream *s = arg;
    return (void *)(intptr_t)pgspout_stream_cancel(s);
}

/* A binding converts a chunk, hands out 10 rows, then another thread
 * cancels: the next handout refuses, nothing more counts, and the count
 * (stats and metric) is exactly what was handed out. */
static void test_handout_counts_and_sees_cancel(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "500", "label", "t_handout", NULL);
    double before = rows_total("t_handout");
    pgspout_stream *s = open_ok(c, "SELECT g FROM generate_series(1, 1000000) g", o);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_HANDOUT, &ch), PGSPOUT_OK);
    int n = pgspout_chunk_nrows(ch);
    assert_true(n > 20);
    assert_int_equal(delivered(s), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(pgspout_stream_handout(s, 1), PGSPOUT_OK);
    assert_int_equal(delivered(s), 10);
    /* the rows not handed out are still the caller's to take again */
    const pgspout_chunk *again;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_HANDOUT, &again), PGSPOUT_OK);
    assert_int_equal(pgspout_chunk_nrows(again), n - 10);
    assert_string_equal(pgspout_row_value(pgspout_chunk_row(again, 0), 0, NULL), "11");
    assert_int_equal(pgspout_stream_handout(s, n - 10 + 1), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_handout(s, -1), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_handout(s, 0), PGSPOUT_OK);
    assert_int_equal(delivered(s), 10);

    pthread_t th;
    void *rc_cancel;
    assert_int_equal(pthread_create(&th, NULL, cancel_main, s), 0);
    pthread_join(th, &rc_cancel);
    assert_int_equal((int)(intptr_t)rc_cancel, PGSPOUT_OK);
    assert_int_equal(pgspout_stream_handout(s, 1), PGSPOUT_ECANCELLED);
    assert_int_equal(pgspout_stream_handout(s, 1), PGSPOUT_ECANCELLED);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ECANCELLED);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
    assert_int_equal(delivered(s), 10);
    pgspout_stream_close(s);
    assert_true(rows_total("t_handout") - before == 10);
    tu_expect_scalar(c, "SELECT 42", "42"); /* the connection is usable */
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* Handing out row by row through a whole result gives every row once, and
 * the count matches what the server returned. */
static void test_handout_whole_stream(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "300", NULL);
    pgspout_stream *s = open_ok(c, "SELECT g FROM generate_series(1, 10000) g", o);
    const pgspout_chunk *ch;
    long long sum = 0, rows = 0;
    int rc;
    while ((rc = pgspout_stream_next_chunk(s, PGSPOUT_HANDOUT, &ch)) == PGSPOUT_OK) {
        int n = pgspout_chunk_nrows(ch);
        /* half one by one, half as a batch */
        int i = 0;
        for (; i < n / 2; i++) {
            assert_int_equal(pgspout_stream_handout(s, 1), PGSPOUT_OK);
            sum += atoll(pgspout_row_value(pgspout_chunk_row(ch, i), 0, NULL));
        }
        assert_int_equal(pgspout_stream_handout(s, n - i), PGSPOUT_OK);
        for (; i < n; i++)
            sum += atoll(pgspout_row_value(pgspout_chunk_row(ch, i), 0, NULL));
        rows += n;
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(rows, 10000);
    assert_true(sum == 10000LL * 10001 / 2);
    assert_int_equal(delivered(s), 10000);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* Closing the connection under a stream mid-chunk: the next handout says
 * so (ESTATE, like pgspout_stream_next). */
static void test_handout_after_conn_close(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_ok(c, "SELECT g FROM generate_series(1, 100000) g", NULL);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_HANDOUT, &ch), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_handout(s, 3), PGSPOUT_OK);
    pgspout_conn_close(c);
    assert_int_equal(pgspout_stream_handout(s, 1), PGSPOUT_ESTATE);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CLOSED);
    assert_int_equal(delivered(s), 3);
    pgspout_stream_close(s);
}

/* A released connection keeps serving its stream to the end, exactly, and
 * closes (its backend goes away) once the stream has ended. */
static void test_release_runs_stream_to_end(void **state)
{
    (void)state;
    pgspout_conn *watch = tu_connect();
    pgspout_conn *c = connect_as("pgspout_t_release1");
    assert_int_equal(backends(watch, "pgspout_t_release1"), 1);
    pgspout_stream *s = open_ok(c, "SELECT g, md5(g::text) FROM generate_series(1, 50000) g", NULL);
    pgspout_conn_release(c); /* the binding's handle is gone; the stream is not */
    const pgspout_row *r;
    int rc;
    long long sum = 0, rows = 0;
    tu_md5 m;
    tu_md5_init(&m);
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        size_t len;
        const char *v = pgspout_row_value(r, 1, &len);
        tu_md5_update(&m, v, len);
        sum += atoll(pgspout_row_value(r, 0, NULL));
        rows++;
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(rows, 50000);
    assert_true(sum == 50000LL * 50001 / 2);
    char got[33];
    tu_md5_hex(&m, got);
    char *want = tu_scalar(watch,
                           "SELECT md5(string_agg(md5(g::text), '' ORDER BY g)) "
                           "FROM generate_series(1, 50000) g",
                           0, NULL);
    assert_string_equal(got, want);
    free(want);
    assert_int_equal(backends_settled(watch, "pgspout_t_release1", 0), 0);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stream_close(s);

    /* released with no stream: closes at once; after a stream that was
     * closed mid-way: closes with that close */
    pgspout_conn *idle = connect_as("pgspout_t_release2");
    pgspout_conn_release(idle);
    assert_int_equal(backends_settled(watch, "pgspout_t_release2", 0), 0);
    pgspout_conn *c3 = connect_as("pgspout_t_release3");
    s = open_ok(c3, "SELECT g FROM generate_series(1, 1000000) g", NULL);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    pgspout_conn_release(c3);
    assert_int_equal(backends(watch, "pgspout_t_release3"), 1);
    pgspout_stream_close(s);
    assert_int_equal(backends_settled(watch, "pgspout_t_release3", 0), 0);
    pgspout_conn_release(NULL);
    pgspout_conn_close(watch);
}

/* The classifier agrees with the server's catalog: every OID it knows is
 * the type it claims, and each array type maps to its element's kind. */
static void test_type_kinds_match_catalog(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        int kind;
    } kinds[] = {
        {"bool", PGSPOUT_KIND_BOOL},
        {"bytea", PGSPOUT_KIND_BYTEA},
        {"int2", PGSPOUT_KIND_INT},
        {"int4", PGSPOUT_KIND_INT},
        {"oid", PGSPOUT_KIND_INT},
        {"int8", PGSPOUT_KIND_INT8},
        {"float4", PGSPOUT_KIND_FLOAT},
        {"float8", PGSPOUT_KIND_FLOAT},
        {"numeric", PGSPOUT_KIND_NUMERIC},
        {"date", PGSPOUT_KIND_DATE},
        {"time", PGSPOUT_KIND_TIME},
        {"timetz", PGSPOUT_KIND_TIMETZ},
        {"timestamp", PGSPOUT_KIND_TIMESTAMP},
        {"timestamptz", PGSPOUT_KIND_TIMESTAMPTZ},
        {"interval", PGSPOUT_KIND_INTERVAL},
        {"uuid", PGSPOUT_KIND_UUID},
        {"json", PGSPOUT_KIND_JSON},
        {"jsonb", PGSPOUT_KIND_JSON},
        {"text", PGSPOUT_KIND_TEXT},
        {"varchar", PGSPOUT_KIND_TEXT},
        {"bpchar", PGSPOUT_KIND_TEXT},
        {"name", PGSPOUT_KIND_TEXT},
        {"char", PGSPOUT_KIND_TEXT},
    };
    pgspout_conn *c = tu_connect();
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const char *p[] = {kinds[i].type};
        char *oid = tu_scalar(c, "SELECT oid FROM pg_type WHERE oid = $1::regtype", 1, p);
        char *arr = tu_scalar(c, "SELECT typarray FROM pg_type WHERE oid = $1::regtype", 1, p);
        unsigned o = (unsigned)strtoul(oid, NULL, 10), a = (unsigned)strtoul(arr, NULL, 10);
        if (pgspout_type_kind(o) != kinds[i].kind)
            fail_msg("%s (oid %u): kind %d, want %d", kinds[i].type, o, pgspout_type_kind(o),
                     kinds[i].kind);
        if (pgspout_type_kind(a) != (PGSPOUT_KIND_ARRAY | kinds[i].kind))
            fail_msg("%s[] (oid %u): kind %#x, want %#x", kinds[i].type, a, pgspout_type_kind(a),
                     PGSPOUT_KIND_ARRAY | kinds[i].kind);
        free(oid);
        free(arr);
    }
    /* and the columns of a stream classify by pgspout_stream_coltype */
    pgspout_stream *s = open_ok(c, "SELECT 1::int8, '{1}'::int4[], 'x'::text, point(1,2)", NULL);
    assert_int_equal(pgspout_type_kind(pgspout_stream_coltype(s, 0)), PGSPOUT_KIND_INT8);
    assert_int_equal(pgspout_type_kind(pgspout_stream_coltype(s, 1)),
                     PGSPOUT_KIND_ARRAY | PGSPOUT_KIND_INT);
    assert_int_equal(pgspout_type_kind(pgspout_stream_coltype(s, 2)), PGSPOUT_KIND_TEXT);
    assert_int_equal(pgspout_type_kind(pgspout_stream_coltype(s, 3)), PGSPOUT_KIND_TEXT);
    assert_int_equal(pgspout_type_kind(0), PGSPOUT_KIND_TEXT);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
}

/* The stats field table describes pgspout_stats exactly (every member after
 * size, in order, with its size) and names the keys of the stats JSON. */
static void test_stats_fields(void **state)
{
    (void)state;
    int n = 0;
    const pgspout_stats_field *f = pgspout_stats_fields(&n);
    assert_non_null(f);
    assert_int_equal(pgspout_stats_fields(NULL), f);
    size_t expect = offsetof(pgspout_stats, state);
    for (int i = 0; i < n; i++) {
        size_t size = f[i].type == PGSPOUT_FIELD_INT || f[i].type == PGSPOUT_FIELD_STATE
                          ? sizeof(int)
                      : f[i].type == PGSPOUT_FIELD_DOUBLE ? sizeof(double)
                                                          : sizeof(uint64_t);
        expect = (expect + size - 1) / size * size; /* natural alignment */
        if (f[i].offset != expect)
            fail_msg("field %s at %zu, want %zu", f[i].name, f[i].offset, expect);
        expect += size;
    }
    assert_int_equal((expect + 7) / 8 * 8, sizeof(pgspout_stats));
    assert_string_equal(f[0].name, "state");
    assert_string_equal(f[n - 1].name, "eta");

    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("expected_rows", "10", NULL);
    pgspout_stream *s = open_ok(c, "SELECT g FROM generate_series(1, 10) g", o);
    const pgspout_row *r;
    while (pgspout_stream_next(s, &r) == PGSPOUT_OK) {
    }
    char *json = pgspout_stream_stats_json(s);
    assert_non_null(json);
    assert_true(tu_json_valid(json, strlen(json)));
    const char *p = json;
    for (int i = 0; i < n; i++) { /* every key, in table order */
        char key[64];
        snprintf(key, sizeof key, "\"%s\":", f[i].name);
        const char *at = strstr(p, key);
        if (at == NULL)
            fail_msg("stats JSON lacks %s (or out of order): %s", key, json);
        p = at + strlen(key);
    }
    assert_non_null(strstr(json, "\"state\":\"done\""));
    assert_non_null(strstr(json, "\"rows_delivered\":10,"));
    pgspout_free(json);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

int main(void)
{
    int gate = tu_db_gate("test_handles");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handout_counts_and_sees_cancel),
        cmocka_unit_test(test_handout_whole_stream),
        cmocka_unit_test(test_handout_after_conn_close),
        cmocka_unit_test(test_release_runs_stream_to_end),
        cmocka_unit_test(test_type_kinds_match_catalog),
        cmocka_unit_test(test_stats_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
