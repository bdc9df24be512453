/* test_binary.c - option binary and the pgspout_binary_* decoders, against
 * the server itself: the same generated values read once in text and once
 * in binary must decode to the same C values (int8, float8 bits, date and
 * time fields), and pgspout_binary_text must give back exactly the server's
 * text, for every type the option takes, edge values included (BC and
 * year > 9999, infinity, 24:00:00, zone offsets with seconds, numeric
 * NaN/Infinity and long scales). Also: which streams fall back to text, and
 * what refuses a binary stream. Needs PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static pgspout_stream *open_with(pgspout_conn *c, const char *sql, const char *binary)
{
    pgspout_options *o = tu_opts("binary", binary, NULL);
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    pgspout_options_free(o);
    if (rc != PGSPOUT_OK)
        fail_msg("open %s: %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    return s;
}

static void set_session(pgspout_conn *c, const char *tz, const char *datestyle)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT set_config('TimeZone', '%s', false) || set_config('DateStyle', '%s', false)",
             tz, datestyle);
    free(tu_scalar(c, sql, 0, NULL));
}

/* Generated values of every type option binary takes, edge values mixed in;
 * some NULLs. */
static const char *const values_sql =
    "WITH g AS (SELECT g, hashint8extended(g, 7) AS h FROM generate_series(1, 20000) g) "
    "SELECT (h % 32768)::int2 AS i2, (h % 2147483648)::int4 AS i4, "
    "  CASE g % 501 WHEN 0 THEN -9223372036854775808 WHEN 1 THEN 9223372036854775807 ELSE h END AS "
    "i8, "
    "  CASE g % 997 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' WHEN 3 THEN "
    "'-0' "
    "    ELSE (h % 1000000007)::float8 / 7 * 10::float8 ^ (g % 580 - 300) END AS f8, "
    "  CASE g % 499 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' WHEN 3 THEN 0 "
    "    ELSE round(h::numeric / 10::numeric ^ (g % 40), g % 25) * 10::numeric ^ (g % 7 * 5 - 15) "
    "END AS num, "
    "  CASE WHEN g % 50 = 0 THEN NULL ELSE md5(g::text) || ' é ''\"\\' END AS txt, "
    "  left(md5(g::text), g % 9)::varchar AS vc, left(md5(g::text), g % 5)::char(6) AS bp, "
    "  md5(g::text)::name AS nm, g % 3 = 0 AS flag, md5(g::text)::uuid AS id, "
    "  json_build_object('g', g, 's', md5(g::text)) AS js, "
    "  jsonb_build_object('g', g, 'f', g / 7.0, 'a', jsonb_build_array(g, 'x')) AS jb, "
    "  CASE g % 401 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' "
    "    ELSE date '2000-01-01' + (h % 2400000)::int END AS d, "
    "  CASE g % 301 WHEN 0 THEN '24:00:00' "
    "    ELSE time '00:00' + make_interval(secs => abs(h % 86400000000) / 1e6) END AS t, "
    "  ((time '00:00' + make_interval(secs => abs(h % 86400000000) / 1e6))::text || "
    "    (ARRAY['+05:30', '-08', '+00', '-03:00:15', '+14'])[g % 5 + 1])::timetz AS ttz, "
    "  CASE g % 401 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' "
    "    ELSE timestamp '2000-01-01' + make_interval(secs => (h % 207360000000000000) / 1e6) END "
    "AS ts, "
    "  CASE g % 401 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' "
    "    ELSE timestamptz '2000-01-01 00:00+00' + make_interval(secs => (h % 207360000000000000) / "
    "1e6) END AS tstz "
    "FROM g";

static void same_value(pgspout_stream *st, int col, const char *tv, size_t tn, const char *bv,
                       size_t bn, int row)
{
    unsigned oid = pgspout_stream_coltype(st, col);
    int kind = pgspout_type_kind(oid);
    const char *name = pgspout_stream_colname(st, col);
    if (kind == PGSPOUT_KIND_FLOAT) { /* the same double, bit for bit */
        double a = 1, b = 2;
        assert_int_equal(pgspout_parse_float8(tv, tn, &a), PGSPOUT_OK);
        assert_int_equal(pgspout_binary_float8(bv, bn, &b), PGSPOUT_OK);
        if (memcmp(&a, &b, sizeof a) != 0)
            fail_msg("row %d %s: text %s, binary %.17g", row, name, tv, b);
        return;
    }
    char buf[64], *txt = buf;
    size_t len = 0;
    int rc = pgspout_binary_text(oid, bv, bn, buf, sizeof buf, &len);
    if (rc != PGSPOUT_OK && len >= sizeof buf) { /* too long for buf: ask again with room */
        txt = malloc(len + 1);
        rc = pgspout_binary_text(oid, bv, bn, txt, len + 1, &len);
    }
    if (rc != PGSPOUT_OK || len != tn || memcmp(txt, tv, tn) != 0)
        fail_msg("row %d %s (oid %u): server text \"%s\", binary_text \"%.*s\" (%s)", row, name,
                 oid, tv, (int)len, txt, pgspout_code_name(rc));
    if (txt != buf)
        free(txt);
    if (kind == PGSPOUT_KIND_INT || kind == PGSPOUT_KIND_INT8) {
        int64_t a = 1, b = 2;
        assert_int_equal(pgspout_parse_int8(tv, tn, &a), PGSPOUT_OK);
        assert_int_equal(pgspout_binary_int8(bv, bn, &b), PGSPOUT_OK);
        assert_true(a == b);
    } else if (kind >= PGSPOUT_KIND_DATE && kind <= PGSPOUT_KIND_TIMESTAMPTZ) {
        pgspout_datetime a, b;
        memset(&a, 1, sizeof a);
        memset(&b, 2, sizeof b);
        assert_int_equal(pgspout_parse_datetime(tv, tn, kind, &a), PGSPOUT_OK);
        assert_int_equal(pgspout_binary_datetime(bv, bn, kind, &b), PGSPOUT_OK);
        if (memcmp(&a, &b, sizeof a) != 0)
            fail_msg("row %d %s: datetime fields differ for %s", row, name, tv);
    }
}

static void test_binary_equals_text(void **state)
{
    (void)state;
    pgspout_conn *c1 = tu_connect(), *c2 = tu_connect();
    set_session(c1, "UTC", "ISO, MDY");
    set_session(c2, "UTC", "ISO, MDY");
    pgspout_stream *t = open_with(c1, values_sql, "off");
    pgspout_stream *b = open_with(c2, values_sql, "on");
    assert_int_equal(pgspout_stream_binary(t), 0);
    assert_int_equal(pgspout_stream_binary(b), 1);
    int ncols = pgspout_stream_ncols(b), rows = 0, nulls = 0;
    assert_int_equal(ncols, pgspout_stream_ncols(t));
    const pgspout_row *rt, *rb;
    for (;;) {
        int a = pgspout_stream_next(t, &rt), z = pgspout_stream_next(b, &rb);
        assert_int_equal(a, z);
        if (a == PGSPOUT_DONE)
            break;
        assert_int_equal(a, PGSPOUT_OK);
        for (int c = 0; c < ncols; c++) {
            size_t tn, bn;
            const char *tv = pgspout_row_value(rt, c, &tn), *bv = pgspout_row_value(rb, c, &bn);
            assert_int_equal(pgspout_row_isnull(rt, c), pgspout_row_isnull(rb, c));
            if (pgspout_row_isnull(rt, c)) {
                nulls++;
                continue;
            }
            same_value(b, c, tv, tn, bv, bn, rows);
        }
        rows++;
    }
    assert_int_equal(rows, 20000);
    assert_int_equal(nulls, 400);
    pgspout_stream_close(t);
    pgspout_stream_close(b);
    pgspout_conn_close(c1);
    pgspout_conn_close(c2);
}

static int binary_of(pgspout_conn *c, const char *sql)
{
    pgspout_stream *s = open_with(c, sql, "on");
    const pgspout_row *r;
    while (pgspout_stream_next(s, &r) == PGSPOUT_OK)
        ;
    int b = pgspout_stream_binary(s);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stream_close(s);
    return b;
}

/* Binary only when every column allows; text otherwise, the rows the same. */
static void test_falls_back_to_text(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    set_session(c, "UTC", "ISO, MDY");
    assert_int_equal(binary_of(c, "SELECT 1::int8, now(), 'x'::text"), 1);
    assert_int_equal(binary_of(c, "SELECT 1::int8, interval '1 day'"), 0);
    assert_int_equal(binary_of(c, "SELECT ARRAY[1, 2]"), 0);
    assert_int_equal(binary_of(c, "SELECT 1.5::float4"), 0);
    assert_int_equal(binary_of(c, "SELECT 'a'::bytea"), 0);
    assert_int_equal(binary_of(c, "SELECT 'pg_class'::regclass"), 0);
    set_session(c, "Europe/Paris", "ISO, MDY");
    assert_int_equal(binary_of(c, "SELECT now()"), 0);
    assert_int_equal(binary_of(c, "SELECT now()::timestamp, current_date"), 1);
    set_session(c, "UTC", "SQL, DMY");
    assert_int_equal(binary_of(c, "SELECT current_date"), 0);
    assert_int_equal(binary_of(c, "SELECT 1, 'x'::text"), 1);
    pgspout_conn_close(c);
}

/* JSON rows need text: ESTATE with the reason, whatever format came; a
 * refused SQL fails the open as without the option. */
static void test_json_refused_and_sql_errors(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    for (int i = 0; i < 2; i++) {
        pgspout_stream *s = open_with(c, i ? "SELECT interval '1 day'" : "SELECT 1", "on");
        const pgspout_row *r;
        const pgspout_chunk *ch;
        const char *js;
        size_t n;
        assert_int_equal(pgspout_stream_next_chunk(s, 0, &ch), PGSPOUT_OK);
        r = pgspout_chunk_row(ch, 0);
        assert_int_equal(pgspout_row_json(s, r, &js, &n), PGSPOUT_ESTATE);
        assert_int_equal(pgspout_chunk_ndjson(s, ch, &js, &n), PGSPOUT_ESTATE);
        assert_non_null(strstr(pgspout_stream_error(s), "option binary"));
        pgspout_stream_close(s);
    }
    pgspout_options *o = tu_opts("binary", "on", NULL);
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELECT nope", 0, NULL, o, &s), PGSPOUT_ESQL);
    assert_string_equal(pgspout_stream_sqlstate(s), "42703");
    pgspout_stream_close(s);
    pgspout_options_free(o);
    tu_expect_scalar(c, "SELECT 'reusable'", "reusable");
    pgspout_conn_close(c);
}

static void test_decoders_refuse(void **state)
{
    (void)state;
    int64_t i = 5;
    double d = 5;
    pgspout_datetime t = {0};
    char buf[8];
    size_t n = 0;
    assert_int_equal(pgspout_binary_int8("\1\2\3", 3, &i), PGSPOUT_EINVAL);
    assert_true(i == 5);
    assert_int_equal(pgspout_binary_int8("\xff\xfe", 2, &i), PGSPOUT_OK);
    assert_true(i == -2);
    assert_int_equal(pgspout_binary_float8("\0\0", 2, &d), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_binary_datetime("\0\0\0\0", 4, PGSPOUT_KIND_TIME, &t), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_binary_datetime("\0\0\0\0", 4, PGSPOUT_KIND_INTERVAL, &t),
                     PGSPOUT_EINVAL);
    assert_int_equal(pgspout_binary_datetime("\0\0\0\0", 4, PGSPOUT_KIND_DATE, &t), PGSPOUT_OK);
    assert_int_equal(t.year * 10000 + t.month * 100 + t.day, 20000101);
    /* numeric 12345.678: digits 1, 2345, 6780; weight 1; dscale 3 */
    static const char num[] = "\0\3\0\1\0\0\0\3\0\1\x09\x29\x1a\x7c";
    assert_int_equal(pgspout_binary_text(1700, num, 14, buf, sizeof buf, &n), PGSPOUT_EINVAL);
    assert_int_equal(n, 9); /* "12345.678" needs 10 bytes with its NUL */
    char big[10];
    assert_int_equal(pgspout_binary_text(1700, num, 14, big, sizeof big, &n), PGSPOUT_OK);
    assert_string_equal(big, "12345.678");
    assert_int_equal(pgspout_binary_text(1700, num, 12, big, sizeof big, &n), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_binary_text(3802, "\2{}", 3, big, sizeof big, &n), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_binary_text(1186, "\0", 1, big, sizeof big, &n), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_binary_text(701, "\0\0\0\0\0\0\0\0", 8, big, sizeof big, &n),
                     PGSPOUT_EINVAL);
}

int main(void)
{
    int gate = tu_db_gate("test_binary");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_equals_text),
        cmocka_unit_test(test_falls_back_to_text),
        cmocka_unit_test(test_json_refused_and_sql_errors),
        cmocka_unit_test(test_decoders_refuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
