/* test_arrow.c - pgspout_stream_arrow: the schema each type maps to, every
 * value of many generated rows checked against what the server computes
 * for it (sums of integers, epoch microseconds, days, interval fields, uuid
 * and bytea bytes), batches bounded by chunk_rows, rows counted as
 * delivered, errors before and during the stream, values a type cannot
 * hold, and closing the stream before releasing the Arrow stream. Needs
 * PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
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

static int is_valid(const struct ArrowArray *a, int64_t i)
{
    const uint8_t *v = a->buffers[0];
    return v == NULL || (v[i / 8] >> (i % 8)) & 1;
}

/* The columns, their Arrow formats, and per column a server-side sum that
 * the test recomputes from the Arrow values (NULLs count 0). */
#define GEN "FROM generate_series(1, 20000) g"
static const struct {
    const char *expr, *format, *oracle;
} cols[] = {
    {"CASE WHEN g % 7 = 0 THEN NULL ELSE g % 2 = 0 END", "b", "count(*) FILTER (WHERE v)"},
    {"(g % 65536 - 32768)::int2", "s", "sum(v)"},
    {"(g * 104729 % 2000000000 - 1000000000)::int4", "i", "sum(v)"},
    {"(g * 200000::int8)::oid", "I", "sum(v::int8)"},
    {"CASE WHEN g % 11 = 0 THEN NULL ELSE g::int8 * 4611686018 END", "l", "sum(v)"},
    {"(g / 8.0)::float4", "f", "sum(v::float8 * 8)::int8"},
    {"g::float8 / 4", "g", "sum(v * 4)::int8"},
    {"(g * 13.0001 - 100000)::numeric(14,4)", "d:14,4", "sum(v * 10000)::int8"},
    {"('2001-02-03'::date + (g * 37 % 100000 - 50000))", "tdD", "sum(v - '1970-01-01'::date)"},
    {"('2024-01-01 00:00:00+00'::timestamptz + g * interval '1.000037 hour')", "tsu:UTC",
     "sum((extract(epoch FROM v) * 1000000)::int8 % 1000000007)"},
    {"('1900-01-01'::timestamp + g * interval '37 days 1.5 sec')",
     "tsu:", "sum((extract(epoch FROM v) * 1000000)::int8 % 1000000007)"},
    {"(time '00:00' + g * interval '1.234567 sec')", "ttu",
     "sum((extract(epoch FROM v) * 1000000)::int8)"},
    {"make_interval(0, g % 30 - 15, 0, g % 40 - 20, 0, 0, g * 0.001)", "tin",
     "sum((extract(year FROM v) * 12 + extract(month FROM v)) * 1000003 + "
     "extract(day FROM v) * 1009 + (extract(epoch FROM v) - extract(epoch FROM "
     "date_trunc('day', v)))::numeric * 1000000 % 1000000007)::int8"},
    {"md5(g::text)::uuid", "w:16", "sum(get_byte(uuid_send(v), g % 16))"},
    {"CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END", "z",
     "sum(length(v) * 1000 + get_byte(v, 3))"},
    {"CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('é', g % 9) END", "u", "sum(octet_length(v))"},
    {"jsonb_build_object('g', g)", "u", "sum(octet_length(v::text))"},
    {"g::numeric / 7", "u", "sum(length(v::text))"},
};
#define NCOLS ((int)(sizeof cols / sizeof cols[0]))

static int64_t column_sum(int c, const struct ArrowArray *a, int64_t i, int64_t g)
{
    const void *d = a->buffers[1];
    switch (c) {
    case 0: return (((const uint8_t *)d)[i / 8] >> (i % 8)) & 1;
    case 1: return ((const int16_t *)d)[i];
    case 2: return ((const int32_t *)d)[i];
    case 3: return ((const uint32_t *)d)[i];
    case 4: return ((const int64_t *)d)[i];
    case 5: return (int64_t)(((const float *)d)[i] * 8);
    case 6: return (int64_t)(((const double *)d)[i] * 4);
    case 7: {
        __extension__ __int128 x;
        memcpy(&x, (const char *)d + 16 * i, 16);
        return (int64_t)x;
    }
    case 8: return ((const int32_t *)d)[i];
    case 9:
    case 10: {
        int64_t us = ((const int64_t *)d)[i];
        return us % 1000000007;
    }
    case 11: return ((const int64_t *)d)[i];
    case 12: {
        int32_t m, days;
        int64_t ns;
        memcpy(&m, (const char *)d + 16 * i, 4);
        memcpy(&days, (const char *)d + 16 * i + 4, 4);
        memcpy(&ns, (const char *)d + 16 * i + 8, 8);
        return (int64_t)m * 1000003 + days * 1009 + ns / 1000 % 1000000007;
    }
    case 13: return ((const uint8_t *)d)[16 * i + g % 16];
    case 14: {
        const int32_t *off = d;
        const uint8_t *bytes = a->buffers[2];
        return (off[i + 1] - off[i]) * 1000 + bytes[off[i] + 3];
    }
    default: { /* utf8: bytes */ const int32_t *off = d; return off[i + 1] - off[i];
    }
    }
}

/* The columns 0..ncols-1 of cols[] through the Arrow stream: in text, or
 * with option arrow (binary when every column allows: the last column,
 * numeric without typmod, does not). */
static void run_types(int arrow, int ncols, int want_binary)
{
    pgspout_conn *c = tu_connect();
    char sql[8192], osql[8192];
    size_t at = (size_t)snprintf(sql, sizeof sql, "SELECT g");
    size_t oat = (size_t)snprintf(osql, sizeof osql, "SELECT (SELECT count(*) " GEN ")");
    for (int k = 0; k < ncols; k++) {
        at += (size_t)snprintf(sql + at, sizeof sql - at, ", %s AS c%d", cols[k].expr, k);
        oat += (size_t)snprintf(osql + oat, sizeof osql - oat,
                                ", (SELECT %s FROM (SELECT %s AS v, g %s) t)", cols[k].oracle,
                                cols[k].expr, GEN);
    }
    snprintf(sql + at, sizeof sql - at, " %s", GEN);
    free(tu_scalar(c, "SELECT set_config('TimeZone', 'America/St_Johns', false)", 0, NULL));

    /* the server's sums, in one row */
    pgspout_stream *o = open_ok(c, osql, NULL);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(o, &r), PGSPOUT_OK);
    int64_t want[NCOLS + 1];
    for (int k = 0; k <= ncols; k++)
        want[k] = strtoll(pgspout_row_value(r, k, NULL), NULL, 10);
    pgspout_stream_close(o);

    pgspout_options *opts = tu_opts("chunk_rows", "1000", "arrow", arrow ? "on" : "off", NULL);
    pgspout_stream *s = open_ok(c, sql, opts);
    assert_int_equal(pgspout_stream_binary(s), want_binary);
    if (arrow) { /* rows only through the Arrow stream */
        const pgspout_row *row;
        const pgspout_chunk *ch;
        assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_ESTATE);
        assert_int_equal(pgspout_stream_next_chunk(s, 0, &ch), PGSPOUT_ESTATE);
        assert_non_null(strstr(pgspout_stream_error(s), "option arrow"));
    }
    struct ArrowArrayStream as;
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_ESTATE); /* one at a time */
    struct ArrowSchema sc;
    assert_int_equal(as.get_schema(&as, &sc), 0);
    assert_string_equal(sc.format, "+s");
    assert_int_equal(sc.n_children, ncols + 1);
    assert_string_equal(sc.children[0]->format, "i");
    assert_string_equal(sc.children[0]->name, "g");
    for (int k = 0; k < ncols; k++) {
        if (strcmp(sc.children[k + 1]->format, cols[k].format) != 0)
            fail_msg("column %d (%s): format %s, want %s", k, cols[k].expr,
                     sc.children[k + 1]->format, cols[k].format);
        assert_true(sc.children[k + 1]->flags & ARROW_FLAG_NULLABLE);
    }
    assert_non_null(sc.children[14]->metadata); /* uuid: arrow.uuid */
    assert_memory_equal(sc.children[14]->metadata + 8, "ARROW:extension:name", 20);
    sc.release(&sc);
    assert_null(sc.release);

    int64_t got[NCOLS + 1] = {0}, rows = 0, batches = 0;
    for (;;) {
        struct ArrowArray b;
        int rc = as.get_next(&as, &b);
        if (rc != 0)
            fail_msg("get_next: %d %s", rc, as.get_last_error(&as));
        if (b.release == NULL)
            break;
        assert_true(b.length >= 1 && b.length <= 1000);
        assert_int_equal(b.n_children, ncols + 1);
        const int32_t *gs = b.children[0]->buffers[1];
        for (int k = 0; k < ncols; k++) {
            const struct ArrowArray *a = b.children[k + 1];
            assert_int_equal(a->length, b.length);
            int64_t nulls = 0;
            for (int64_t i = 0; i < a->length; i++) {
                if (!is_valid(a, i)) {
                    nulls++;
                    continue;
                }
                got[k] += column_sum(k, a, i, gs[i]);
            }
            assert_int_equal(nulls, a->null_count);
        }
        rows += b.length;
        batches++;
        b.release(&b);
        assert_null(b.release);
    }
    assert_int_equal(rows, want[0]);
    assert_true(batches >= 20);
    for (int k = 0; k < ncols; k++)
        if (got[k] != want[k + 1])
            fail_msg("column %d (%s): arrow sum %lld, server %lld", k, cols[k].expr,
                     (long long)got[k], (long long)want[k + 1]);
    pgspout_stats st = PGSPOUT_STATS_INIT;
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.rows_delivered, 20000);
    as.release(&as);
    assert_null(as.release);
    pgspout_stream_close(s);
    pgspout_options_free(opts);
    pgspout_conn_close(c);
}

static void test_types_against_server(void **state)
{
    (void)state;
    run_types(0, NCOLS, 0);
}

static void test_types_binary_against_server(void **state)
{
    (void)state;
    run_types(1, NCOLS - 1, 1);
}

static void test_types_arrow_text_fallback(void **state)
{
    (void)state;
    run_types(1, NCOLS, 0);
}

/* option arrow: the statement is prepared first, so a bad one fails the
 * open with the server's error, and the connection goes on */
static void test_arrow_open_errors(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("arrow", "on", NULL);
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELEC 1", 0, NULL, o, &s), PGSPOUT_ESQL);
    assert_string_equal(pgspout_stream_sqlstate(s), "42601");
    pgspout_stream_close(s);
    const char *p[] = {"41"};
    s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELECT $1::int8 + 1 AS n", 1, p, o, &s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_binary(s), 1);
    struct ArrowArrayStream as;
    struct ArrowArray b;
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    assert_int_equal(as.get_next(&as, &b), 0);
    assert_int_equal(b.length, 1);
    assert_int_equal(((const int64_t *)b.children[0]->buffers[1])[0], 42);
    b.release(&b);
    as.release(&as);
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 'still usable'", "still usable");
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

static void test_errors_and_close_order(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    struct ArrowArrayStream as;
    struct ArrowArray b;
    assert_int_equal(pgspout_stream_arrow(NULL, &as), PGSPOUT_EINVAL);

    /* a server error after some rows ends the batches with its SQLSTATE */
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    pgspout_stream *s = open_ok(c, "SELECT 10 / (5000 - g) FROM generate_series(1, 10000) g", o);
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    int rc, rows = 0;
    while ((rc = as.get_next(&as, &b)) == 0 && b.release != NULL) {
        rows += (int)b.length;
        b.release(&b);
    }
    assert_int_equal(rc, EIO);
    assert_true(rows < 5000);
    assert_non_null(strstr(as.get_last_error(&as), "22012"));
    assert_string_equal(pgspout_stream_sqlstate(s), "22012");
    as.release(&as);
    pgspout_stream_close(s);

    /* a value decimal128 cannot hold */
    s = open_ok(c, "SELECT v::numeric(10,2) FROM (VALUES (1.5), ('NaN')) t(v)", NULL);
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    assert_int_equal(as.get_next(&as, &b), EIO);
    assert_non_null(strstr(as.get_last_error(&as), "evalue"));
    assert_null(b.release);
    as.release(&as);
    pgspout_stream_close(s);

    /* closing the stream first: the Arrow stream fails, then releases */
    s = open_ok(c, "SELECT g FROM generate_series(1, 100000) g", o);
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    struct ArrowArray first;
    assert_int_equal(as.get_next(&as, &first), 0);
    assert_int_equal(first.length, 100);
    pgspout_stream_close(s);
    struct ArrowSchema sc;
    assert_int_equal(as.get_schema(&as, &sc), EIO);
    assert_int_equal(as.get_next(&as, &b), EIO);
    assert_null(b.release);
    assert_non_null(strstr(as.get_last_error(&as), "estate"));
    as.release(&as);
    /* the batch made before outlives both */
    const int32_t *v = first.children[0]->buffers[1];
    assert_int_equal(v[99], 100);
    first.release(&first);

    /* an empty result: a schema and at once the end */
    s = open_ok(c, "SELECT 1 AS a, 'x'::text AS b WHERE false", NULL);
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    assert_int_equal(as.get_schema(&as, &sc), 0);
    assert_int_equal(sc.n_children, 2);
    sc.release(&sc);
    struct ArrowArray e;
    assert_int_equal(as.get_next(&as, &e), 0);
    assert_null(e.release);
    as.release(&as);
    pgspout_stream_close(s);
    /* the connection is reusable after every case */
    tu_expect_scalar(c, "SELECT 42", "42");
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

int main(void)
{
    int gate = tu_db_gate("test_arrow");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types_against_server),
        cmocka_unit_test(test_types_binary_against_server),
        cmocka_unit_test(test_types_arrow_text_fallback),
        cmocka_unit_test(test_arrow_open_errors),
        cmocka_unit_test(test_errors_and_close_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
