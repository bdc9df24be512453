/* test_stream.c - streaming against a real PostgreSQL (PGSPOUT_TEST_DSN).
 *
 * Every row is checked: the client hashes what it received and compares it
 * with the server's own md5(string_agg(...)) over the same text rendering.
 * Large results are generated with generate_series in the target list so the
 * server streams them instead of materialising them first.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgspout.h"
#include "testutil.h"

/* ------------------------------------------------------------- helpers */

/* rows "i|md5(i)" for i = 1..n, in order (streams; no materialisation) */
#define PAIRS_SQL "SELECT i, md5(i::text) FROM (SELECT generate_series(1, $1::int) AS i) g"

typedef struct agg {
    uint64_t rows;
    tu_md5 md5;
    int bad_order; /* first row whose column 0 was not rows+1, or 0 */
} agg;

static void agg_init(agg *a)
{
    memset(a, 0, sizeof *a);
    tu_md5_init(&a->md5);
}

/* Add one row as "c0|c1|..." joined by ',' to the running hash; check that
 * column 0 is the row number (1-based). */
static void agg_row(agg *a, const pgspout_row *r)
{
    int n = pgspout_row_ncols(r);
    if (a->rows)
        tu_md5_update(&a->md5, ",", 1);
    for (int c = 0; c < n; c++) {
        size_t len = 0;
        const char *v = pgspout_row_value(r, c, &len);
        if (c)
            tu_md5_update(&a->md5, "|", 1);
        tu_md5_update(&a->md5, v, len);
    }
    a->rows++;
    if (!a->bad_order) {
        const char *v0 = pgspout_row_value(r, 0, NULL);
        if (!v0 || strtoull(v0, NULL, 10) != a->rows)
            a->bad_order = (int)a->rows;
    }
}

/* The server's checksum of PAIRS_SQL for n rows. */
static void server_pairs_md5(pgspout_conn *c, long n, char out[33])
{
    char nb[32];
    snprintf(nb, sizeof nb, "%ld", n);
    const char *p[] = {nb};
    char *m = tu_scalar(c,
                        "SELECT md5(coalesce(string_agg(i::text || '|' || md5(i::text), ',' "
                        "ORDER BY i), '')) FROM generate_series(1, $1::int) i",
                        1, p);
    assert_non_null(m);
    assert_int_equal(strlen(m), 32);
    memcpy(out, m, 33);
    free(m);
}

static pgspout_stream *open_pairs(pgspout_conn *c, long n, const pgspout_options *o)
{
    char nb[32];
    snprintf(nb, sizeof nb, "%ld", n);
    const char *p[] = {nb};
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, PAIRS_SQL, 1, p, o, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("open pairs(%ld) = %s: %s", n, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    assert_non_null(s);
    return s;
}

/* Drain s with next into a; returns the final code. */
static int drain_next(pgspout_stream *s, agg *a)
{
    const pgspout_row *r;
    int rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        agg_row(a, r);
    return rc;
}

static void check_pairs(pgspout_conn *c, agg *a, long n)
{
    char want[33], got[33];
    server_pairs_md5(c, n, want);
    tu_md5_hex(&a->md5, got);
    if (a->rows != (uint64_t)n)
        fail_msg("rows: got %" PRIu64 ", want %ld", a->rows, n);
    if (a->bad_order)
        fail_msg("row %d out of order", a->bad_order);
    if (strcmp(got, want))
        fail_msg("checksum of %ld rows: client %s, server %s", n, got, want);
}

/* Open sql with no parameters, expecting OK. */
static pgspout_stream *open_sql(pgspout_conn *c, const char *sql, const pgspout_options *o)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("open(%s) = %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    return s;
}

/* ------------------------------------------------------------- sizes */

static const long boundary_sizes[] = {0, 1, 99, 100, 101};

static void test_sizes_next(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    for (size_t i = 0; i < sizeof boundary_sizes / sizeof boundary_sizes[0]; i++) {
        long n = boundary_sizes[i];
        pgspout_stream *s = open_pairs(c, n, o);
        assert_int_equal(pgspout_stream_ncols(s), 2);
        agg a;
        agg_init(&a);
        int rc = drain_next(s, &a);
        if (rc != PGSPOUT_DONE)
            fail_msg("n=%ld: next = %s: %s", n, pgspout_code_name(rc), pgspout_stream_error(s));
        assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
        assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_OK);
        /* after DONE, DONE again */
        const pgspout_row *r = NULL;
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
        pgspout_stats st = {.size = sizeof st};
        assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
        assert_int_equal(st.rows_delivered, (uint64_t)n);
        assert_int_equal(st.rows_received, (uint64_t)n);
        assert_int_equal(st.state, PGSPOUT_STATE_DONE);
        pgspout_stream_close(s);
        check_pairs(c, &a, n);
    }
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

static void test_sizes_chunks(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    for (size_t i = 0; i < sizeof boundary_sizes / sizeof boundary_sizes[0]; i++) {
        long n = boundary_sizes[i];
        pgspout_stream *s = open_pairs(c, n, o);
        agg a;
        agg_init(&a);
        const pgspout_chunk *ch = NULL;
        int rc, nchunks = 0;
        while ((rc = pgspout_stream_next_chunk(s, 0, &ch)) == PGSPOUT_OK) {
            int k = pgspout_chunk_nrows(ch);
            assert_true(k >= 1);
            assert_null(pgspout_chunk_row(ch, k));
            assert_null(pgspout_chunk_row(ch, -1));
            for (int j = 0; j < k; j++)
                agg_row(&a, pgspout_chunk_row(ch, j));
            nchunks++;
        }
        if (rc != PGSPOUT_DONE)
            fail_msg("n=%ld: next_chunk = %s: %s", n, pgspout_code_name(rc),
                     pgspout_stream_error(s));
        assert_int_equal(pgspout_stream_next_chunk(s, 0, &ch), PGSPOUT_DONE);
        assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_DONE);
        if (n > 0)
            assert_true(nchunks >= (n + 99) / 100);
        pgspout_stream_close(s);
        check_pairs(c, &a, n);
    }
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

static void test_million_rows(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    /* 200k under valgrind (~25k rows/s there): still hundreds of buffers */
    long n = tu_scaled(1000000, 200000);
    double t0 = tu_now();
    pgspout_stream *s = open_pairs(c, n, NULL);
    agg a;
    agg_init(&a);
    int rc = drain_next(s, &a);
    if (rc != PGSPOUT_DONE)
        fail_msg("next = %s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
    print_message("%ld rows streamed in %.2f s\n", n, tu_now() - t0);
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.rows_delivered, (uint64_t)n);
    pgspout_stream_close(s);
    check_pairs(c, &a, n);
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------ transport */

/* Whichever transport this process uses (pgspout_transport), rows arrive
 * complete and in order, in chunks of at most chunk_rows. The chunked one
 * (libpq >= 17) takes libpq's results whole, and libpq fills each before
 * handing it over: every chunk but the last has exactly chunk_rows rows. */
static void test_transport_chunk_rows(void **state)
{
    (void)state;
    int chunked = strcmp(pgspout_transport(), "chunked") == 0;
    print_message("transport: %s\n", pgspout_transport());
    pgspout_conn *c = tu_connect();
    static const char *const sizes[] = {"1", "7", "1000"};
    static const long counts[] = {0, 1, 1000, 2501};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        pgspout_options *o = tu_opts("chunk_rows", sizes[i], NULL);
        long k = atol(sizes[i]);
        for (size_t j = 0; j < sizeof counts / sizeof counts[0]; j++) {
            long n = counts[j], got = 0;
            pgspout_stream *s = open_pairs(c, n, o);
            agg a;
            agg_init(&a);
            const pgspout_chunk *ch;
            int rc;
            while ((rc = pgspout_stream_next_chunk(s, 0, &ch)) == PGSPOUT_OK) {
                long m = pgspout_chunk_nrows(ch);
                if (m < 1 || m > k || (chunked && m != k && got + m != n))
                    fail_msg("chunk_rows %ld, %ld rows: a chunk of %ld rows after %ld", k, n, m,
                             got);
                for (int r = 0; r < (int)m; r++)
                    agg_row(&a, pgspout_chunk_row(ch, r));
                got += m;
            }
            if (rc != PGSPOUT_DONE)
                fail_msg("next_chunk = %s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
            pgspout_stream_close(s);
            check_pairs(c, &a, n);
        }
        pgspout_options_free(o);
    }
    pgspout_conn_close(c);
}

/* 5 rows, then a notice (the server flushes what it holds) and 30 s of
 * silence: the rows are on the client's socket, the end is not. */
#define FIVE_THEN_SILENCE                                                                          \
    "SELECT i FROM (SELECT i FROM generate_series(1, 5) i UNION ALL "                              \
    "SELECT 0 FROM (SELECT pg_temp.flush_sleep(30) AS z) q WHERE z < 0) t"

/* What each transport hands over while the server is silent: single-row
 * mode every row received; chunked mode the full chunks (3 rows), libpq
 * holding the rest until its chunk fills or the result ends. And max_rows
 * under chunk_rows caps libpq's chunk too, so that a limited stream does not
 * wait for rows it will not deliver. */
static void test_transport_held_rows(void **state)
{
    (void)state;
    int chunked = strcmp(pgspout_transport(), "chunked") == 0;
    pgspout_conn *c = tu_connect();
    free(tu_scalar(c,
                   "CREATE FUNCTION pg_temp.flush_sleep(secs float8) RETURNS int LANGUAGE plpgsql "
                   "AS $$ BEGIN RAISE NOTICE 'flush'; PERFORM pg_sleep(secs); RETURN 0; END $$",
                   0, NULL));
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%.0fms", tu_slack(1.0) * 1000);
    pgspout_options *o = tu_opts("chunk_rows", "3", "timeout", timeout, NULL);
    pgspout_stream *s = open_sql(c, FIVE_THEN_SILENCE, o);
    const pgspout_row *r;
    long n = 0;
    int rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        assert_int_equal(atol(pgspout_row_value(r, 0, NULL)), ++n);
    assert_int_equal(rc, PGSPOUT_ETIMEOUT);
    assert_int_equal(n, chunked ? 3 : 5);
    pgspout_stream_close(s);
    pgspout_options_free(o);

    o = tu_opts("max_rows", "3", NULL); /* chunk_rows 1000 */
    double t0 = tu_now();
    s = open_sql(c, FIVE_THEN_SILENCE, o);
    n = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        n++;
    double took = tu_now() - t0;
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(n, 3);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_LIMITED);
    /* the server's 30 s silence was not waited for: halfway is far from both */
    if (took > tu_slack(15))
        fail_msg("max_rows 3 took %.2f s", took);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    tu_expect_scalar(c, "SELECT 'after'", "after");
    pgspout_conn_close(c);
}

/* ---------------------------------------------------------------- NULLs */

static void test_nulls(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c,
                                 "SELECT NULL::int AS a, ''::text AS b, NULL::text AS c, "
                                 "'x'::text AS d, NULL::jsonb AS e, NULL::bool AS f",
                                 NULL);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_row_ncols(r), 6);
    size_t len = 99;
    static const int nulls[] = {1, 0, 1, 0, 1, 1};
    for (int col = 0; col < 6; col++) {
        assert_int_equal(pgspout_row_isnull(r, col), nulls[col]);
        const char *v = pgspout_row_value(r, col, &len);
        assert_non_null(v);
        if (nulls[col]) {
            assert_string_equal(v, "");
            assert_int_equal(len, 0);
        }
    }
    /* empty string: not NULL, length 0 */
    assert_string_equal(pgspout_row_value(r, 1, &len), "");
    assert_int_equal(len, 0);
    assert_string_equal(pgspout_row_value(r, 3, &len), "x");
    assert_int_equal(len, 1);
    /* value with len NULL is fine */
    assert_string_equal(pgspout_row_value(r, 3, NULL), "x");
    /* out of range */
    assert_null(pgspout_row_value(r, 6, &len));
    assert_null(pgspout_row_value(r, -1, &len));
    assert_int_equal(pgspout_row_isnull(r, 6), -1);
    assert_int_equal(pgspout_row_isnull(r, -1), -1);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);

    /* many NULLs across chunks: every other row NULL */
    pgspout_options *o = tu_opts("chunk_rows", "10", NULL);
    s = open_sql(c,
                 "SELECT CASE WHEN i % 2 = 0 THEN NULL ELSE i END FROM "
                 "generate_series(1, 1000) i",
                 o);
    int i = 0, rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        i++;
        assert_int_equal(pgspout_row_isnull(r, 0), i % 2 == 0);
        if (i % 2)
            assert_int_equal(atoi(pgspout_row_value(r, 0, NULL)), i);
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(i, 1000);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* ---------------------------------------------------------------- types */

static void test_types_text_form(void **state)
{
    (void)state;
    /* fixed session settings so the text forms are deterministic */
    char *dsn = tu_dsn_with("options='-c TimeZone=UTC -c DateStyle=ISO,MDY "
                            "-c IntervalStyle=postgres -c extra_float_digits=1 "
                            "-c bytea_output=hex'");
    pgspout_conn *c = NULL;
    int rc = pgspout_connect(dsn, &c);
    if (rc != PGSPOUT_OK)
        fail_msg("connect: %s", pgspout_conn_error(c));
    free(dsn);
    static const struct {
        const char *expr, *name;
        unsigned oid;
        const char *text;
    } cols[] = {
        {"1::int2", "i2", 21, "1"},
        {"(-32768)::int2", "i2min", 21, "-32768"},
        {"2147483647::int4", "i4", 23, "2147483647"},
        {"(-9223372036854775807 - 1)::int8", "i8min", 20, "-9223372036854775808"},
        {"9223372036854775807::int8", "i8", 20, "9223372036854775807"},
        {"4294967295::oid", "o", 26, "4294967295"},
        {"1.5::float4", "f4", 700, "1.5"},
        {"'NaN'::float4", "f4nan", 700, "NaN"},
        {"0.1::float8", "f8", 701, "0.1"},
        {"'NaN'::float8", "f8nan", 701, "NaN"},
        {"'Infinity'::float8", "f8inf", 701, "Infinity"},
        {"'-Infinity'::float8", "f8ninf", 701, "-Infinity"},
        {"'-0'::float8", "f8negz", 701, "-0"},
        {"1e300::float8", "f8big", 701, "1e+300"},
        {"'123456789012345678901234567890.123456789012345678901234567890'::numeric", "num", 1700,
         "123456789012345678901234567890.123456789012345678901234567890"},
        {"'NaN'::numeric", "numnan", 1700, "NaN"},
        {"'-Infinity'::numeric", "numninf", 1700, "-Infinity"},
        {"1.50::numeric(10,2)", "numscale", 1700, "1.50"},
        {"true", "bt", 16, "t"},
        {"false", "bf", 16, "f"},
        {"E'l\\u00e9o \\U0001F600 \\u4e2d\\u6587\\nline2\\ttab \"q\" \\\\'::text", "txt", 25,
         "l\xc3\xa9o \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87\nline2\ttab \"q\" \\"},
        {"'ab'::char(3)", "bpc", 1042, "ab "},
        {"'v'::varchar(10)", "vc", 1043, "v"},
        {"'\\x00ff10'::bytea", "by", 17, "\\x00ff10"},
        {"''::bytea", "byempty", 17, "\\x"},
        {"'2024-02-29'::date", "d", 1082, "2024-02-29"},
        {"'infinity'::date", "dinf", 1082, "infinity"},
        {"'2024-01-02 03:04:05.678'::timestamp", "ts", 1114, "2024-01-02 03:04:05.678"},
        {"'2024-01-02 03:04:05.678+02'::timestamptz", "tstz", 1184, "2024-01-02 01:04:05.678+00"},
        {"'1 day 02:03:04'::interval", "iv", 1186, "1 day 02:03:04"},
        {"'1 year 2 mons 3 days 04:05:06.789'::interval", "iv2", 1186,
         "1 year 2 mons 3 days 04:05:06.789"},
        {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "u", 2950,
         "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
        {"'{\"a\": [1, 2],  \"z\" : null}'::json", "js", 114, "{\"a\": [1, 2],  \"z\" : null}"},
        {"'{\"b\":1,\"a\":[1,2]}'::jsonb", "jb", 3802, "{\"a\": [1, 2], \"b\": 1}"},
        {"ARRAY[1,2,3]", "arr", 1007, "{1,2,3}"},
        {"ARRAY['a b', 'c\"d', NULL, '']::text[]", "tarr", 1009, "{\"a b\",\"c\\\"d\",NULL,\"\"}"},
        {"'{}'::int4[]", "earr", 1007, "{}"},
        {"ARRAY[]::text[]", "etarr", 1009, "{}"},
        {"ARRAY[[1,2],[3,4]]", "arr2", 1007, "{{1,2},{3,4}}"},
        {"'192.168.0.1/24'::inet", "ip", 869, "192.168.0.1/24"},
    };
    enum { N = sizeof cols / sizeof cols[0] };
    char sql[8192];
    size_t off = (size_t)snprintf(sql, sizeof sql, "SELECT ");
    for (int i = 0; i < N; i++)
        off += (size_t)snprintf(sql + off, sizeof sql - off, "%s%s AS %s", i ? ", " : "",
                                cols[i].expr, cols[i].name);
    assert_true(off < sizeof sql);
    pgspout_stream *s = open_sql(c, sql, NULL);
    assert_int_equal(pgspout_stream_ncols(s), N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(pgspout_stream_colname(s, i), cols[i].name);
        if (pgspout_stream_coltype(s, i) != cols[i].oid)
            fail_msg("column %s: type %u, want %u", cols[i].name, pgspout_stream_coltype(s, i),
                     cols[i].oid);
    }
    assert_null(pgspout_stream_colname(s, N));
    assert_null(pgspout_stream_colname(s, -1));
    assert_int_equal(pgspout_stream_coltype(s, N), 0);
    assert_int_equal(pgspout_stream_coltype(s, -1), 0);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_row_ncols(r), N);
    for (int i = 0; i < N; i++) {
        size_t len = 0;
        const char *v = pgspout_row_value(r, i, &len);
        assert_int_equal(pgspout_row_isnull(r, i), 0);
        if (strcmp(v, cols[i].text))
            fail_msg("column %s (%s): got \"%s\", want \"%s\"", cols[i].name, cols[i].expr, v,
                     cols[i].text);
        assert_int_equal(len, strlen(cols[i].text));
    }
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);

    pgspout_conn_close(c);
}

static void test_column_names(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c,
                                 "SELECT 1 AS \"\xc3\xbcn\xc3\xaf c\xc3\xb6"
                                 "d\xc3\xa9 "
                                 "\xf0\x9f\x98\x80\", 2 AS \"we\"\"ird\", 3, 4 AS \"UPPER\"",
                                 NULL);
    assert_int_equal(pgspout_stream_ncols(s), 4);
    assert_string_equal(pgspout_stream_colname(s, 0), "\xc3\xbcn\xc3\xaf c\xc3\xb6"
                                                      "d\xc3\xa9 \xf0\x9f\x98\x80");
    assert_string_equal(pgspout_stream_colname(s, 1), "we\"ird");
    assert_string_equal(pgspout_stream_colname(s, 2), "?column?");
    assert_string_equal(pgspout_stream_colname(s, 3), "UPPER");
    for (int i = 0; i < 4; i++)
        assert_int_equal(pgspout_stream_coltype(s, i), 23);
    pgspout_stream_close(s);

    /* columns are known even for an empty result */
    s = open_sql(c, "SELECT 1::int8 AS a, 'x'::text AS b WHERE false", NULL);
    assert_int_equal(pgspout_stream_ncols(s), 2);
    assert_string_equal(pgspout_stream_colname(s, 0), "a");
    assert_string_equal(pgspout_stream_colname(s, 1), "b");
    assert_int_equal(pgspout_stream_coltype(s, 0), 20);
    assert_int_equal(pgspout_stream_coltype(s, 1), 25);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------ parameters */

static void test_params(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    const char *p[] = {"2", "3", "h\xc3\xa9llo \xf0\x9f\x98\x80 \xe4\xb8\xad", NULL, ""};
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c,
                                 "SELECT $1::int + $2::int, $3::text, $4::text IS NULL, $4::text, "
                                 "$5::text = '', length($3::text), $1::text",
                                 5, p, NULL, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("open = %s: %s", pgspout_code_name(rc), s ? pgspout_stream_error(s) : "");
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(r, 0, NULL), "5");
    assert_string_equal(pgspout_row_value(r, 1, NULL), p[2]);
    assert_string_equal(pgspout_row_value(r, 2, NULL), "t");
    assert_int_equal(pgspout_row_isnull(r, 3), 1);
    assert_string_equal(pgspout_row_value(r, 4, NULL), "t");
    assert_string_equal(pgspout_row_value(r, 5, NULL), "9");
    assert_string_equal(pgspout_row_value(r, 6, NULL), "2");
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);

    /* a large parameter (1 MB) comes back intact */
    size_t big = 1 << 20;
    char *v = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        v[i] = (char)('a' + i % 26);
    v[big] = 0;
    const char *bp[] = {v};
    s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELECT $1::text, length($1::text)", 1, bp, NULL, &s),
                     PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    size_t len = 0;
    const char *got = pgspout_row_value(r, 0, &len);
    assert_int_equal(len, big);
    assert_memory_equal(got, v, big);
    assert_string_equal(pgspout_row_value(r, 1, NULL), "1048576");
    pgspout_stream_close(s);
    free(v);
    pgspout_conn_close(c);
}

/* Parameters are never interpolated into the SQL text. */
static void test_params_not_interpolated(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c, "CREATE TEMP TABLE x (v int)", NULL);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);
    s = open_sql(c, "INSERT INTO x VALUES (1), (2)", NULL);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);

    static const char *const evil[] = {
        "'; DROP TABLE x; --",   "1); DROP TABLE x; --", "$1",
        "\\'; DROP TABLE x; --", "' OR '1'='1",          "\"; DROP TABLE x; --",
    };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        const char *p[] = {evil[i]};
        s = NULL;
        int rc = pgspout_stream_open(c, "SELECT $1::text, $1::text = 'x'", 1, p, NULL, &s);
        assert_int_equal(rc, PGSPOUT_OK);
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
        assert_string_equal(pgspout_row_value(r, 0, NULL), evil[i]);
        assert_string_equal(pgspout_row_value(r, 1, NULL), "f");
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
        pgspout_stream_close(s);
        /* as a filter value too: matches nothing, and the table survives */
        s = NULL;
        rc = pgspout_stream_open(c, "SELECT v FROM x WHERE v::text = $1", 1, p, NULL, &s);
        assert_int_equal(rc, PGSPOUT_OK);
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
        pgspout_stream_close(s);
    }
    tu_expect_scalar(c, "SELECT count(*) FROM x", "2");
    pgspout_conn_close(c);
}

static void test_wrong_param_count(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    const char *p[] = {"1", "2", "3"};
    static const struct {
        const char *sql;
        int n;
    } cases[] = {
        {"SELECT $1::int + $2::int", 1},
        {"SELECT $1::int + $2::int", 3},
        {"SELECT $1::int", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pgspout_stream *s = NULL;
        int rc = pgspout_stream_open(c, cases[i].sql, cases[i].n, cases[i].n ? p : NULL, NULL, &s);
        if (rc != PGSPOUT_ESQL)
            fail_msg("%s with %d params: %s, want ESQL", cases[i].sql, cases[i].n,
                     pgspout_code_name(rc));
        assert_non_null(s);
        assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_FAILED);
        assert_int_equal(strlen(pgspout_stream_sqlstate(s)), 5);
        assert_true(strlen(pgspout_stream_error(s)) > 0);
        assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_ESQL);
        pgspout_stream_close(s);
        tu_expect_scalar(c, "SELECT 'reusable'", "reusable");
    }
    /* a parameter the server cannot convert: 22P02 */
    const char *bad[] = {"abc"};
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELECT $1::int", 1, bad, NULL, &s), PGSPOUT_ESQL);
    assert_string_equal(pgspout_stream_sqlstate(s), "22P02");
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 'reusable'", "reusable");
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------------ JSON */

/* Hash of every row_json output joined by '\n'. */
static uint64_t json_rows_md5(pgspout_stream *s, char out[33])
{
    tu_md5 m;
    tu_md5_init(&m);
    const pgspout_row *r;
    uint64_t n = 0;
    int rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        const char *j = NULL;
        size_t len = 0;
        assert_int_equal(pgspout_row_json(s, r, &j, &len), PGSPOUT_OK);
        assert_non_null(j);
        assert_int_equal(strlen(j), len);
        if (!tu_json_valid(j, len))
            fail_msg("row_json not valid JSON: %s", j);
        if (n)
            tu_md5_update(&m, "\n", 1);
        tu_md5_update(&m, j, len);
        n++;
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    tu_md5_hex(&m, out);
    return n;
}

#define DOC_SQL                                                                                    \
    "SELECT jsonb_build_object('i', i, 's', repeat(E'\\u00e9\"\\n', i % 5), 'n', NULL, "           \
    "'a', jsonb_build_array(i, 'x', 1.50, true), 'f', i / 3.0) AS doc "                            \
    "FROM generate_series(1, 500) i"

static void test_json_single_column(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "50", NULL);
    /* a single jsonb column is handed over untouched: byte-identical to the
     * server's own text of it */
    pgspout_stream *s = open_sql(c, DOC_SQL, o);
    assert_int_equal(pgspout_stream_coltype(s, 0), 3802);
    char got[33];
    assert_int_equal(json_rows_md5(s, got), 500);
    pgspout_stream_close(s);
    char *want = tu_scalar(c,
                           "SELECT md5(string_agg(doc::text, E'\\n' ORDER BY (doc->>'i')::int)) "
                           "FROM (" DOC_SQL ") t",
                           0, NULL);
    assert_string_equal(got, want);
    free(want);

    /* json (not jsonb): whitespace and key order kept as sent */
    s = open_sql(c, "SELECT '{ \"b\" :  1, \"a\":[ 2 ] }'::json", NULL);
    const pgspout_row *r;
    const char *j;
    size_t len;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_row_json(s, r, &j, &len), PGSPOUT_OK);
    assert_string_equal(j, "{ \"b\" :  1, \"a\":[ 2 ] }");
    pgspout_stream_close(s);

    /* scalars and NULL in a single jsonb column */
    s = open_sql(c,
                 "SELECT v FROM (VALUES (1, '1'::jsonb), (2, '\"s\"'), (3, 'null'), (4, NULL), "
                 "(5, '[]')) t(k, v) ORDER BY k",
                 NULL);
    static const char *const want5[] = {"1", "\"s\"", "null", "null", "[]"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
        assert_int_equal(pgspout_row_json(s, r, &j, &len), PGSPOUT_OK);
        assert_string_equal(j, want5[i]);
    }
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* Types whose JSON rendering the header defines the same way as
 * PostgreSQL's row_to_json: numbers bare, non-finite as strings, booleans,
 * null, json/jsonb nested, text escaped. */
#define MULTI_SQL                                                                                  \
    "WITH t AS (SELECT i::int2 AS a, (i * 1000000)::int4 AS b, "                                   \
    "(i::int8 * 3000000000) AS c, (i / 4.0)::float4 AS f4, "                                       \
    "'NaN'::float8 AS fnan, 'Infinity'::float8 AS finf, '-Infinity'::float8 AS fninf, "            \
    "'-0'::float8 AS fz, 1e300::float8 AS fbig, "                                                  \
    "123456789012345678901234567890.123456789::numeric AS num, 'NaN'::numeric AS nnan, "           \
    "'Infinity'::numeric AS ninf, i % 2 = 0 AS even, NULL::int AS nul, "                           \
    "E'q\"\\\\ \\n\\t\\b\\f\\r' || chr(1) || chr(31) || E' \\u00e9\\U0001F600' || i AS txt, "      \
    "jsonb_build_object('k', i, 'l', jsonb_build_array(1, 'x', NULL)) AS jb, "                     \
    "'{ \"raw\" : true }'::json AS js, ''::text AS empty, ('v' || i)::varchar AS vc, "             \
    "('2024-01-01'::date + i)::text AS d, NULL::jsonb AS nj, i AS \"we\"\"ird k\xc3\xa9y\" "       \
    "FROM generate_series(1, 20) i) "

static void test_json_multi_column(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "7", NULL);
    pgspout_stream *s = open_sql(c, MULTI_SQL "SELECT * FROM t", o);
    /* the server's rendering, one row per line */
    pgspout_conn *c2 = tu_connect();
    pgspout_stream *ref = open_sql(c2, MULTI_SQL "SELECT row_to_json(t)::text FROM t", NULL);
    const pgspout_row *r, *rr;
    int n = 0, rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        assert_int_equal(pgspout_stream_next(ref, &rr), PGSPOUT_OK);
        const char *j;
        size_t len;
        assert_int_equal(pgspout_row_json(s, r, &j, &len), PGSPOUT_OK);
        if (!tu_json_valid(j, len))
            fail_msg("row %d: not valid JSON: %s", n + 1, j);
        size_t rlen;
        const char *want = pgspout_row_value(rr, 0, &rlen);
        if (!tu_json_same(j, len, want, rlen))
            fail_msg("row %d: row_json differs from row_to_json", n + 1);
        n++;
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(pgspout_stream_next(ref, &rr), PGSPOUT_DONE);
    assert_int_equal(n, 20);
    pgspout_stream_close(s);
    pgspout_stream_close(ref);
    pgspout_conn_close(c2);

    /* arrays nest, timestamps are ISO 8601 (as row_to_json renders them);
     * other types are escaped strings of their text form */
    s = open_sql(c,
                 "SELECT ARRAY[1,2] AS arr, '2024-01-02 03:04:05'::timestamp AS ts, "
                 "'\\x01'::bytea AS by, '1 day'::interval AS iv, 42::oid AS o",
                 NULL);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    const char *j;
    size_t len;
    assert_int_equal(pgspout_row_json(s, r, &j, &len), PGSPOUT_OK);
    const char *want = "{\"arr\":[1,2],\"ts\":\"2024-01-02T03:04:05\",\"by\":\"\\\\x01\","
                       "\"iv\":\"1 day\",\"o\":\"42\"}"; /* oid: a string, as row_to_json */
    assert_true(tu_json_same(j, len, want, strlen(want)));
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* Count '\n' in s[0..n). */
static int count_lines(const char *s, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

static void test_chunk_ndjson(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "7", NULL);
    static const char *const queries[] = {
        MULTI_SQL "SELECT * FROM t",
        DOC_SQL,
    };
    static const char *const refs[] = {
        MULTI_SQL "SELECT row_to_json(t)::text FROM t",
        "SELECT doc::text FROM (" DOC_SQL ") t",
    };
    for (int q = 0; q < 2; q++) {
        pgspout_stream *s = open_sql(c, queries[q], o);
        tu_buf all = {0};
        const pgspout_chunk *ch;
        int rc, rows = 0;
        while ((rc = pgspout_stream_next_chunk(s, 0, &ch)) == PGSPOUT_OK) {
            int k = pgspout_chunk_nrows(ch);
            const char *nd;
            size_t len;
            assert_int_equal(pgspout_chunk_ndjson(s, ch, &nd, &len), PGSPOUT_OK);
            assert_int_equal(strlen(nd), len);
            assert_int_equal(count_lines(nd, len), k);
            assert_int_equal(nd[len - 1], '\n');
            tu_buf_add(&all, nd, len);
            /* each line equals row_json of that row */
            const char *line = all.data + all.len - len;
            for (int i = 0; i < k; i++) {
                const char *eol = strchr(line, '\n');
                size_t ll = (size_t)(eol - line);
                char *copy = strndup(line, ll);
                const char *j;
                size_t jl;
                assert_int_equal(pgspout_row_json(s, pgspout_chunk_row(ch, i), &j, &jl),
                                 PGSPOUT_OK);
                assert_int_equal(jl, ll);
                assert_memory_equal(j, copy, ll);
                free(copy);
                line = eol + 1;
            }
            rows += k;
        }
        assert_int_equal(rc, PGSPOUT_DONE);
        pgspout_stream_close(s);
        /* against the server, line by line */
        s = open_sql(c, refs[q], NULL);
        const pgspout_row *r;
        const char *line = all.data;
        int n = 0;
        while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
            const char *eol = strchr(line, '\n');
            assert_non_null(eol);
            size_t rl;
            const char *want = pgspout_row_value(r, 0, &rl);
            if (q == 1) { /* jsonb: untouched */
                assert_int_equal((size_t)(eol - line), rl);
                assert_memory_equal(line, want, rl);
            } else if (!tu_json_same(line, (size_t)(eol - line), want, rl))
                fail_msg("ndjson line %d differs from row_to_json", n + 1);
            line = eol + 1;
            n++;
        }
        assert_int_equal(rc, PGSPOUT_DONE);
        assert_int_equal(n, rows);
        assert_int_equal(*line, 0);
        pgspout_stream_close(s);
        tu_buf_free(&all);
    }
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* ----------------------------------------------------------- SQL errors */

static void test_syntax_error(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, "SELEC 1", 0, NULL, NULL, &s);
    assert_int_equal(rc, PGSPOUT_ESQL);
    assert_non_null(s); /* a failed stream, to read the error from */
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_FAILED);
    assert_string_equal(pgspout_stream_sqlstate(s), "42601");
    assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_ESQL);
    const char *e = pgspout_stream_error(s);
    if (!strstr(e, "syntax"))
        fail_msg("error does not say syntax: %s", e);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESQL);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESQL);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, 0, &ch), PGSPOUT_ESQL);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_ESTATE);
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 1", "1");

    /* other server errors at open */
    static const struct {
        const char *sql, *state;
    } errs[] = {
        {"SELECT * FROM no_such_table_xyz", "42P01"},
        {"SELECT no_such_col FROM generate_series(1,2)", "42703"},
        {"SELECT 1; SELECT 2", "42601"}, /* one statement per stream */
        {"SELECT 1/0", "22012"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        s = NULL;
        rc = pgspout_stream_open(c, errs[i].sql, 0, NULL, NULL, &s);
        if (rc != PGSPOUT_ESQL)
            fail_msg("%s: %s, want ESQL", errs[i].sql, pgspout_code_name(rc));
        assert_string_equal(pgspout_stream_sqlstate(s), errs[i].state);
        pgspout_stream_close(s);
        tu_expect_scalar(c, "SELECT 2", "2");
    }
    pgspout_conn_close(c);
}

static void test_error_mid_stream(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    pgspout_stream *s = open_sql(c, "SELECT 1/(i-5000) FROM generate_series(1,10000) i", o);
    const pgspout_row *r;
    int rc, n = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        n++;
        /* rows before the error are the right ones */
        const char *v = pgspout_row_value(r, 0, NULL);
        assert_string_equal(v, n == 4999 ? "-1" : "0");
    }
    assert_int_equal(rc, PGSPOUT_ESQL);
    /* the server sent 4999 rows before the error: all are delivered */
    if (!strcmp(pgspout_transport(), "single-row"))
        assert_int_equal(n, 4999);
    else
        assert_in_range(n, 4999 - 100, 4999);
    assert_string_equal(pgspout_stream_sqlstate(s), "22012");
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_FAILED);
    assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_ESQL);
    assert_non_null(strstr(pgspout_stream_error(s), "division by zero"));
    /* never mistaken for a normal end: the same code again */
    for (int i = 0; i < 3; i++)
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESQL);
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.rows_delivered, (uint64_t)n);
    assert_int_equal(st.state, PGSPOUT_STATE_FAILED);
    pgspout_stream_close(s);

    /* the same through next_chunk */
    s = open_sql(c, "SELECT 1/(i-5000) FROM generate_series(1,10000) i", o);
    const pgspout_chunk *ch;
    n = 0;
    while ((rc = pgspout_stream_next_chunk(s, 0, &ch)) == PGSPOUT_OK)
        n += pgspout_chunk_nrows(ch);
    assert_int_equal(rc, PGSPOUT_ESQL);
    if (!strcmp(pgspout_transport(), "single-row"))
        assert_int_equal(n, 4999);
    assert_int_equal(pgspout_stream_next_chunk(s, 0, &ch), PGSPOUT_ESQL);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    tu_expect_scalar(c, "SELECT 'after error'", "after error");
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------- pause */

static void test_pause_resume_same_thread(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    long n = 100000;
    pgspout_stream *s = open_pairs(c, n, o);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_RUNNING);
    agg a;
    agg_init(&a);
    const pgspout_row *r;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
        agg_row(&a, r);
    }
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_PAUSED);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK); /* idempotent */
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_PAUSED);
    /* buffered rows stay consumable; then "paused" without blocking */
    const pgspout_chunk *ch;
    int rc, polls = 0;
    while ((rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch)) == PGSPOUT_OK) {
        for (int i = 0; i < pgspout_chunk_nrows(ch); i++)
            agg_row(&a, pgspout_chunk_row(ch, i));
        assert_true(++polls < 1000);
    }
    assert_int_equal(rc, PGSPOUT_PAUSED);
    uint64_t at_pause = a.rows;
    tu_sleep_ms(200);
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_PAUSED);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_PAUSED);
    assert_int_equal(a.rows, at_pause);
    assert_true(at_pause < (uint64_t)n);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_RUNNING);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_OK); /* idempotent */
    rc = drain_next(s, &a);
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.pauses, 1);
    assert_true(st.paused_time >= 0.15);
    assert_true(st.paused_time < st.elapsed);
    /* pause/resume on a finished stream: state error */
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stream_close(s);
    check_pairs(c, &a, n);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

typedef struct pauser {
    pgspout_stream *s;
    _Atomic uint64_t rows; /* rows the main thread consumed */
    _Atomic int main_done;
    int rc_pause, rc_resume, state_paused, state_resumed;
    uint64_t at_300, at_600;
    double t_pause, t_resume;
    int timed_out;
} pauser;

static void *pauser_main(void *arg)
{
    pauser *p = arg;
    double t0 = tu_now();
    while (atomic_load(&p->rows) < 2000) {
        if (tu_now() - t0 > tu_slack(20) || atomic_load(&p->main_done)) {
            p->timed_out = 1;
            return NULL;
        }
        tu_sleep_ms(1);
    }
    p->t_pause = tu_now();
    p->rc_pause = pgspout_stream_pause(p->s);
    p->state_paused = pgspout_stream_state(p->s);
    tu_sleep_ms(300);
    p->at_300 = atomic_load(&p->rows);
    tu_sleep_ms(300);
    p->at_600 = atomic_load(&p->rows);
    p->t_resume = tu_now();
    p->rc_resume = pgspout_stream_resume(p->s);
    p->state_resumed = pgspout_stream_state(p->s);
    return NULL;
}

static void test_pause_from_other_thread(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    long n = 300000;
    pgspout_stream *s = open_pairs(c, n, NULL);
    pauser p;
    memset(&p, 0, sizeof p);
    p.s = s;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pauser_main, &p), 0);
    agg a;
    agg_init(&a);
    const pgspout_row *r;
    int rc;
    double last = tu_now(), max_gap = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        double now = tu_now();
        if (now - last > max_gap)
            max_gap = now - last;
        last = now;
        agg_row(&a, r);
        atomic_store(&p.rows, a.rows);
    }
    atomic_store(&p.main_done, 1);
    pthread_join(th, NULL);
    assert_false(p.timed_out);
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(p.rc_pause, PGSPOUT_OK);
    assert_int_equal(p.state_paused, PGSPOUT_STATE_PAUSED);
    assert_int_equal(p.rc_resume, PGSPOUT_OK);
    /* next blocked while paused and empty: nothing consumed between 300 and
     * 600 ms after the pause, and not everything before it */
    if (p.at_300 != p.at_600)
        fail_msg("rows kept arriving while paused: %" PRIu64 " at +300ms, %" PRIu64 " at +600ms",
                 p.at_300, p.at_600);
    assert_true(p.at_600 < (uint64_t)n);
    assert_true(max_gap >= 0.5);
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.pauses, 1);
    assert_true(st.paused_time >= 0.5);
    pgspout_stream_close(s);
    check_pairs(c, &a, n);
    pgspout_conn_close(c);
}

/* Event-loop driving: NONBLOCK next_chunk + poll on the stream's socket. */
static void test_nonblocking_event_loop(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "500", NULL);
    long n = 200000;
    pgspout_stream *s = open_pairs(c, n, o);
    agg a;
    agg_init(&a);
    const pgspout_chunk *ch;
    int rc, again = 0, paused_seen = 0;
    double t0 = tu_now();
    for (;;) {
        rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch);
        if (rc == PGSPOUT_OK) {
            for (int i = 0; i < pgspout_chunk_nrows(ch); i++)
                agg_row(&a, pgspout_chunk_row(ch, i));
            /* pause for a moment half-way: PAUSED, then resume */
            if (!paused_seen && a.rows >= (uint64_t)n / 2) {
                assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
                paused_seen = 1;
            }
            continue;
        }
        if (rc == PGSPOUT_AGAIN) {
            again++;
            int fd = pgspout_stream_socket(s);
            assert_true(fd >= 0);
            struct pollfd pfd = {fd, POLLIN, 0};
            int ms = pgspout_stream_wait_ms(s);
            poll(&pfd, 1, ms < 0 || ms > 1000 ? 1000 : ms);
        } else if (rc == PGSPOUT_PAUSED) {
            assert_int_equal(paused_seen, 1);
            assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_PAUSED);
            paused_seen = 2;
            assert_int_equal(pgspout_stream_resume(s), PGSPOUT_OK);
        } else
            break;
        assert_true(tu_now() - t0 < tu_slack(60));
    }
    if (rc != PGSPOUT_DONE)
        fail_msg("event loop ended with %s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
    assert_int_equal(paused_seen, 2);
    print_message("event loop: %d AGAIN polls\n", again);
    pgspout_stream_close(s);
    check_pairs(c, &a, n);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* The event-loop descriptor: quiet while paused (no spinning on data the
 * stream does not want), and woken by a resume from another thread. */
typedef struct resumer {
    pgspout_stream *s;
    int delay_ms;
} resumer;

static void *resume_after(void *arg)
{
    resumer *r = arg;
    usleep((useconds_t)r->delay_ms * 1000);
    pgspout_stream_resume(r->s);
    return NULL;
}

static void test_event_loop_descriptor(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    pgspout_stream *s = open_pairs(c, 100000, o);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_OK);
    int fd = pgspout_stream_socket(s);
    assert_true(fd >= 0);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    /* the pause itself wakes the loop once */
    struct pollfd pfd = {fd, POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, 1000), 1);
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_PAUSED);
    /* paused, with server data waiting: the descriptor stays quiet */
    usleep(100 * 1000);
    pfd.revents = 0;
    assert_int_equal(poll(&pfd, 1, 300), 0);
    /* a resume from another thread wakes the loop */
    resumer r = {s, 200};
    pthread_t th;
    pthread_create(&th, NULL, resume_after, &r);
    double t0 = tu_now();
    pfd.revents = 0;
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    double waited = tu_now() - t0;
    pthread_join(th, NULL);
    assert_true(waited >= 0.15 && waited < tu_slack(2.0));
    /* and the stream goes on to the end, polling only when told to */
    uint64_t rows = (uint64_t)pgspout_chunk_nrows(ch);
    int rc, spins = 0;
    while ((rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch)) != PGSPOUT_DONE) {
        if (rc == PGSPOUT_OK) {
            rows += (uint64_t)pgspout_chunk_nrows(ch);
            continue;
        }
        assert_int_equal(rc, PGSPOUT_AGAIN);
        pfd.revents = 0;
        if (poll(&pfd, 1, 5000) != 1)
            fail_msg("descriptor never became readable while the stream waited for data");
        spins++;
    }
    print_message("event loop descriptor: woke %.3f s after pause, %d polls\n", waited, spins);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------- cancel */

typedef struct canceller {
    pgspout_stream *s;
    _Atomic uint64_t rows;
    _Atomic int main_done;
    uint64_t after;
    int rc_cancel, timed_out;
    double t_cancel;
} canceller;

static void *canceller_main(void *arg)
{
    canceller *k = arg;
    double t0 = tu_now();
    while (atomic_load(&k->rows) < k->after) {
        if (tu_now() - t0 > tu_slack(20) || atomic_load(&k->main_done)) {
            k->timed_out = 1;
            return NULL;
        }
        tu_sleep_ms(1);
    }
    k->t_cancel = tu_now();
    k->rc_cancel = pgspout_stream_cancel(k->s);
    return NULL;
}

/* Big enough that it cannot finish before the cancel lands. */
#define ENDLESS_SQL "SELECT i, md5(i::text) FROM (SELECT generate_series(1, 200000000) AS i) g"

static void test_cancel_from_other_thread(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c, ENDLESS_SQL, NULL);
    canceller k;
    memset(&k, 0, sizeof k);
    k.s = s;
    k.after = 5000;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, canceller_main, &k), 0);
    const pgspout_row *r;
    int rc;
    uint64_t n = 0;
    double t0 = tu_now();
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        n++;
        atomic_store(&k.rows, n);
        if (tu_now() - t0 > tu_slack(60))
            break;
    }
    double t_end = tu_now();
    atomic_store(&k.main_done, 1);
    pthread_join(th, NULL);
    assert_false(k.timed_out);
    assert_int_equal(k.rc_cancel, PGSPOUT_OK);
    if (rc != PGSPOUT_ECANCELLED)
        fail_msg("next after cancel = %s (%d), want ECANCELLED: %s", pgspout_code_name(rc), rc,
                 pgspout_stream_error(s));
    assert_true(n >= 5000 && n < 200000000);
    assert_true(t_end - k.t_cancel < tu_slack(3.0));
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
    assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_ECANCELLED);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ECANCELLED);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_ESTATE);
    pgspout_stream_close(s);

    /* the SAME connection runs a new query correctly */
    assert_int_equal(pgspout_conn_ok(c), 1);
    s = open_pairs(c, 10000, NULL);
    agg a;
    agg_init(&a);
    assert_int_equal(drain_next(s, &a), PGSPOUT_DONE);
    pgspout_stream_close(s);
    check_pairs(c, &a, 10000);
    /* and again, a few times, to catch a late cancel hitting a later query */
    for (int i = 0; i < 5; i++)
        tu_expect_scalar(c, "SELECT count(*) FROM pg_sleep(0.05)", "1");
    pgspout_conn_close(c);
}

/* Cancel from the owner thread, right after open and after a few rows. */
static void test_cancel_same_thread(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    for (int after = 0; after <= 10; after += 10) {
        pgspout_stream *s = open_sql(c, ENDLESS_SQL, NULL);
        const pgspout_row *r;
        for (int i = 0; i < after; i++)
            assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
        assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
        assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK); /* idempotent while ending */
        int rc;
        uint64_t more = 0;
        while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
            assert_true(++more < 1000000);
        assert_int_equal(rc, PGSPOUT_ECANCELLED);
        assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
        pgspout_stream_close(s);
        tu_expect_scalar(c, "SELECT 'after cancel'", "after cancel");
    }
    pgspout_conn_close(c);
}

/* -------------------------------------------------------------- close */

static void test_close_mid_stream_reuse(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    /* right after open, after a few rows, while paused */
    for (int mode = 0; mode < 3; mode++) {
        pgspout_stream *s = open_sql(c, ENDLESS_SQL, NULL);
        const pgspout_row *r;
        if (mode >= 1)
            for (int i = 0; i < 10; i++)
                assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
        if (mode == 2)
            assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
        double t0 = tu_now();
        pgspout_stream_close(s);
        double took = tu_now() - t0;
        if (took > tu_slack(5))
            fail_msg("close mid-stream took %.1f s", took);
        assert_int_equal(pgspout_conn_ok(c), 1);
        agg a;
        agg_init(&a);
        s = open_pairs(c, 1000, NULL);
        assert_int_equal(drain_next(s, &a), PGSPOUT_DONE);
        pgspout_stream_close(s);
        check_pairs(c, &a, 1000);
    }
    /* close a stream whose rows all arrived but were not read */
    pgspout_stream *s = open_pairs(c, 50, NULL);
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 'ok'", "ok");
    pgspout_conn_close(c);
}

/* ----------------------------------------------------- state transitions */

static void test_state_transitions(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "10", NULL);
    pgspout_stream *s = open_pairs(c, 100, o);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_RUNNING);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_PAUSED);
    /* buffered rows are consumable while paused */
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(r, 0, NULL), "1");
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_PAUSED);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_RUNNING);
    int rc, n = 1;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        n++;
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(n, 100);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    assert_string_equal(pgspout_stream_error(s), "");
    assert_string_equal(pgspout_stream_sqlstate(s), "");
    pgspout_stream_close(s);

    /* cancelled while paused */
    s = open_pairs(c, 100000, o);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        ;
    assert_int_equal(rc, PGSPOUT_ECANCELLED);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_ESTATE);
    pgspout_stream_close(s);

    /* utility statements: no columns, DONE at once */
    static const char *const util[] = {"SET application_name = 'pgspout_test'", "",
                                       "CREATE TEMP TABLE st (a int)", "DROP TABLE st"};
    for (size_t i = 0; i < sizeof util / sizeof util[0]; i++) {
        s = open_sql(c, util[i], NULL);
        assert_int_equal(pgspout_stream_ncols(s), 0);
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
        assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
        pgspout_stream_close(s);
    }
    tu_expect_scalar(c, "SELECT current_setting('application_name')", "pgspout_test");
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------ bad input */

static void test_null_pointers(void **state)
{
    (void)state;
    pgspout_conn *c = (pgspout_conn *)(uintptr_t)1;
    assert_int_equal(pgspout_connect(NULL, &c), PGSPOUT_EINVAL);
    assert_null(c);
    assert_int_equal(pgspout_connect(tu_dsn(), NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_connect_opts(tu_dsn(), NULL, NULL), PGSPOUT_EINVAL);
    pgspout_conn_close(NULL);
    assert_non_null(pgspout_conn_error(NULL));
    assert_int_equal(pgspout_conn_ok(NULL), 0);
    assert_int_equal(pgspout_conn_cancel(NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_conn_server_version(NULL), 0);

    c = tu_connect();
    assert_true(pgspout_conn_server_version(c) >= 100000);
    assert_string_equal(pgspout_conn_error(c), "");
    pgspout_stream *s = (pgspout_stream *)(uintptr_t)1;
    assert_int_equal(pgspout_stream_open(NULL, "SELECT 1", 0, NULL, NULL, &s), PGSPOUT_EINVAL);
    assert_null(s);
    s = (pgspout_stream *)(uintptr_t)1;
    assert_int_equal(pgspout_stream_open(c, NULL, 0, NULL, NULL, &s), PGSPOUT_EINVAL);
    assert_null(s);
    assert_int_equal(pgspout_stream_open(c, "SELECT 1", 0, NULL, NULL, NULL), PGSPOUT_EINVAL);
    s = (pgspout_stream *)(uintptr_t)1;
    assert_int_equal(pgspout_stream_open(c, "SELECT $1::int", 1, NULL, NULL, &s), PGSPOUT_EINVAL);
    assert_null(s);
    assert_int_equal(pgspout_stream_open(c, "SELECT 1", -1, NULL, NULL, &s), PGSPOUT_EINVAL);
    assert_null(s);

    /* stream functions on NULL */
    const pgspout_row *r = NULL;
    const pgspout_chunk *ch = NULL;
    const char *j = NULL;
    size_t len = 0;
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_next(NULL, &r), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_next_chunk(NULL, 0, &ch), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_pause(NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_resume(NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_cancel(NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_stats(NULL, &st), PGSPOUT_EINVAL);
    assert_null(pgspout_stream_stats_json(NULL));
    assert_int_equal(pgspout_stream_socket(NULL), -1);
    assert_int_equal(pgspout_stream_wait_ms(NULL), -1);
    assert_true(pgspout_stream_ncols(NULL) <= 0);
    assert_null(pgspout_stream_colname(NULL, 0));
    assert_int_equal(pgspout_stream_coltype(NULL, 0), 0);
    assert_non_null(pgspout_stream_error(NULL));
    assert_non_null(pgspout_stream_sqlstate(NULL));
    (void)pgspout_stream_state(NULL);
    (void)pgspout_stream_errcode(NULL);
    pgspout_stream_close(NULL);
    assert_true(pgspout_row_ncols(NULL) <= 0);
    assert_null(pgspout_row_value(NULL, 0, &len));
    assert_int_equal(pgspout_row_isnull(NULL, 0), -1);
    assert_true(pgspout_chunk_nrows(NULL) <= 0);
    assert_null(pgspout_chunk_row(NULL, 0));

    /* NULL out-pointers on a live stream leave it intact */
    s = open_pairs(c, 100, NULL);
    assert_int_equal(pgspout_stream_next(s, NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_next_chunk(s, 0, NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_next_chunk(s, 0x100, &ch), PGSPOUT_EINVAL); /* bad flag */
    assert_int_equal(pgspout_stream_stats(s, NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_row_json(NULL, NULL, &j, &len), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_row_json(s, NULL, &j, &len), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_chunk_ndjson(s, NULL, &j, &len), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_chunk_ndjson(NULL, NULL, &j, &len), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_row_json(s, r, NULL, &len), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_row_json(s, r, &j, NULL), PGSPOUT_OK); /* len optional */
    assert_string_equal(pgspout_row_value(r, 0, NULL), "1");
    agg a;
    agg_init(&a);
    agg_row(&a, r);
    assert_int_equal(drain_next(s, &a), PGSPOUT_DONE);
    pgspout_stream_close(s);
    check_pairs(c, &a, 100);
    pgspout_conn_close(c);
}

static void test_bad_options_via_stream(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = pgspout_options_new();
    assert_int_equal(pgspout_options_set(o, "no_such_option", "1"), PGSPOUT_EOPTION);
    assert_int_equal(pgspout_options_set(o, "max_memory", "12XB"), PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(o, "chunk_rows", "-5"), PGSPOUT_EVALUE);
    /* the failed sets changed nothing: the stream runs with defaults */
    pgspout_stream *s = open_pairs(c, 2500, o);
    /* the options were copied: freeing them now is fine */
    pgspout_options_free(o);
    agg a;
    agg_init(&a);
    assert_int_equal(drain_next(s, &a), PGSPOUT_DONE);
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.chunk_rows, 1000);
    pgspout_stream_close(s);
    check_pairs(c, &a, 2500);
    pgspout_conn_close(c);
}

static void test_busy_connection(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    long n = 20000;
    pgspout_stream *s1 = open_pairs(c, n, o);
    agg a;
    agg_init(&a);
    const pgspout_row *r;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pgspout_stream_next(s1, &r), PGSPOUT_OK);
        agg_row(&a, r);
    }
    for (int paused = 0; paused < 2; paused++) {
        if (paused)
            assert_int_equal(pgspout_stream_pause(s1), PGSPOUT_OK);
        pgspout_stream *s2 = NULL;
        int rc = pgspout_stream_open(c, "SELECT 1", 0, NULL, NULL, &s2);
        assert_int_equal(rc, PGSPOUT_EBUSY);
        assert_true(strlen(pgspout_conn_error(c)) > 0);
        /* whatever handle came back, closing it must not touch s1 */
        pgspout_stream_close(s2);
    }
    assert_int_equal(pgspout_stream_resume(s1), PGSPOUT_OK);
    assert_int_equal(drain_next(s1, &a), PGSPOUT_DONE);
    /* s1 ended (not yet closed): no longer active, a new stream may run */
    pgspout_stream *s3 = open_sql(c, "SELECT 'third'", NULL);
    assert_int_equal(pgspout_stream_next(s3, &r), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(r, 0, NULL), "third");
    pgspout_stream_close(s1); /* closing the old one must not disturb s3 */
    assert_int_equal(pgspout_stream_next(s3, &r), PGSPOUT_DONE);
    pgspout_stream_close(s3);
    check_pairs(c, &a, n);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* Closing the connection ends an open stream; the handle stays valid until
 * closed and every call on it is a state error. */
static void test_next_after_conn_close(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c, ENDLESS_SQL, NULL);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    pgspout_conn_close(c);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CLOSED);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESTATE);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, 0, &ch), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_ESTATE);
    assert_true(strlen(pgspout_stream_error(s)) > 0);
    pgspout_stats st = {.size = sizeof st};
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.state, PGSPOUT_STATE_CLOSED);
    pgspout_stream_close(s);
}

static void expect_connect_fails(const char *dsn, const char *secret)
{
    pgspout_conn *c = NULL;
    int rc = pgspout_connect(dsn, &c);
    if (rc != PGSPOUT_ECONNECT) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", c ? pgspout_conn_error(c) : "(no handle)");
        pgspout_conn_close(c);
        fail_msg("connect(%s) = %s, want ECONNECT: %s", dsn, pgspout_code_name(rc), msg);
    }
    assert_non_null(c);
    const char *e = pgspout_conn_error(c);
    assert_non_null(e);
    if (strlen(e) < 5)
        fail_msg("connect(%s): empty error \"%s\"", dsn, e);
    if (strstr(e, secret))
        fail_msg("connect error leaks the password: %s", e);
    print_message("connect error: %s\n", e);
    assert_int_equal(pgspout_conn_ok(c), 0);
    /* a failed connection cannot run a stream, and says so */
    pgspout_stream *s = NULL;
    rc = pgspout_stream_open(c, "SELECT 1", 0, NULL, NULL, &s);
    assert_true(rc < 0);
    if (s) {
        assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_FAILED);
        assert_null(strstr(pgspout_stream_error(s), secret));
        pgspout_stream_close(s);
    }
    assert_null(strstr(pgspout_conn_error(c), secret));
    pgspout_conn_close(c);
}

static void test_bad_dsn(void **state)
{
    (void)state;
    /* nothing listens on port 1 */
    expect_connect_fails(
        "host=127.0.0.1 port=1 user=nobody password=secret123 dbname=x connect_timeout=5",
        "secret123");
    expect_connect_fails("postgresql://nobody:secret123@127.0.0.1:1/x?connect_timeout=5",
                         "secret123");
    /* malformed conninfo */
    expect_connect_fails("host=127.0.0.1 password=secret123 port=notaport", "secret123");
    expect_connect_fails("password=secret123 no_such_keyword=1", "secret123");
    expect_connect_fails("password='secret123", "secret123");
}

/* SCRAM: a wrong password fails cleanly without echoing it; the right one
 * connects. */
static void test_auth_failure(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c, "DROP ROLE IF EXISTS pgspout_scram_test", NULL);
    pgspout_stream_close(s);
    s = open_sql(c, "CREATE ROLE pgspout_scram_test LOGIN PASSWORD 'rightpw'", NULL);
    pgspout_stream_close(s);
    char *port = tu_scalar(c, "SELECT current_setting('port')", 0, NULL);
    char *db = tu_scalar(c, "SELECT current_database()", 0, NULL);
    char dsn[512];
    snprintf(dsn, sizeof dsn,
             "host=127.0.0.1 port=%s dbname=%s user=pgspout_scram_test password=secret123 "
             "connect_timeout=5",
             port, db);
    expect_connect_fails(dsn, "secret123");
    snprintf(dsn, sizeof dsn,
             "host=127.0.0.1 port=%s dbname=%s user=pgspout_scram_test password=rightpw "
             "connect_timeout=5",
             port, db);
    pgspout_conn *c2 = NULL;
    int rc = pgspout_connect(dsn, &c2);
    if (rc != PGSPOUT_OK)
        fail_msg("SCRAM login with the right password: %s", pgspout_conn_error(c2));
    tu_expect_scalar(c2, "SELECT current_user", "pgspout_scram_test");
    pgspout_conn_close(c2);
    s = open_sql(c, "DROP ROLE pgspout_scram_test", NULL);
    pgspout_stream_close(s);
    free(port);
    free(db);
    pgspout_conn_close(c);
}

/* Connection strings: "" (PG* environment), URI, and client_encoding is
 * always UTF8 whatever the caller asks. */
static void test_conninfo_forms(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    char *port = tu_scalar(c, "SELECT current_setting('port')", 0, NULL);
    char *user = tu_scalar(c, "SELECT current_user", 0, NULL);
    char *db = tu_scalar(c, "SELECT current_database()", 0, NULL);
    tu_expect_scalar(c, "SHOW client_encoding", "UTF8");
    pgspout_conn_close(c);

    char uri[256];
    snprintf(uri, sizeof uri, "postgresql://%s@127.0.0.1:%s/%s?application_name=pgspout_uri", user,
             port, db);
    c = NULL;
    int rc = pgspout_connect(uri, &c);
    if (rc != PGSPOUT_OK)
        fail_msg("connect(%s): %s", uri, pgspout_conn_error(c));
    tu_expect_scalar(c, "SELECT current_setting('application_name')", "pgspout_uri");
    pgspout_conn_close(c);

    char *dsn = tu_dsn_with("client_encoding=LATIN1");
    c = NULL;
    assert_int_equal(pgspout_connect(dsn, &c), PGSPOUT_OK);
    free(dsn);
    tu_expect_scalar(c, "SHOW client_encoding", "UTF8");
    tu_expect_scalar(c, "SELECT E'\\u00e9\\U0001F600'", "\xc3\xa9\xf0\x9f\x98\x80");
    pgspout_conn_close(c);

    const char *h = getenv("PGHOST"), *pp = getenv("PGPORT");
    if (h && pp && !strcmp(pp, port)) {
        c = NULL;
        rc = pgspout_connect("", &c);
        if (rc != PGSPOUT_OK)
            fail_msg("connect(\"\") with PGHOST/PGPORT: %s", pgspout_conn_error(c));
        tu_expect_scalar(c, "SELECT current_setting('port')", port);
        pgspout_conn_close(c);
    } else
        print_message("PGHOST/PGPORT not set for this server: connect(\"\") not checked\n");
    free(port);
    free(user);
    free(db);
}

/* COPY is not a result a stream can deliver: a clear error, connection fine. */
static void test_copy_rejected(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, "COPY (SELECT 1) TO STDOUT", 0, NULL, NULL, &s);
    const pgspout_row *r;
    if (rc == PGSPOUT_OK)
        rc = pgspout_stream_next(s, &r);
    assert_int_equal(rc, PGSPOUT_ESQL);
    assert_true(strlen(pgspout_stream_error(s)) > 0);
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 'after copy'", "after copy");
    pgspout_conn_close(c);
}

/* -------------------------------------------------- more edge cases */

/* next and next_chunk interleaved on one stream: every row exactly once. */
static void test_mixed_next_and_chunk(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    long n = 10000;
    pgspout_stream *s = open_pairs(c, n, o);
    agg a;
    agg_init(&a);
    int rc = PGSPOUT_OK, i = 0;
    while (rc == PGSPOUT_OK) {
        if (i++ % 3 == 0) {
            const pgspout_chunk *ch;
            rc = pgspout_stream_next_chunk(s, 0, &ch);
            if (rc == PGSPOUT_OK)
                for (int j = 0; j < pgspout_chunk_nrows(ch); j++)
                    agg_row(&a, pgspout_chunk_row(ch, j));
        } else {
            const pgspout_row *r;
            rc = pgspout_stream_next(s, &r);
            if (rc == PGSPOUT_OK)
                agg_row(&a, r);
        }
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    pgspout_stream_close(s);
    check_pairs(c, &a, n);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* SELECT with no columns still has rows. */
static void test_zero_columns(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_sql(c, "SELECT FROM generate_series(1, 3)", NULL);
    assert_int_equal(pgspout_stream_ncols(s), 0);
    const pgspout_row *r;
    int rc, n = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        n++;
        assert_int_equal(pgspout_row_ncols(r), 0);
        assert_null(pgspout_row_value(r, 0, NULL));
        const char *j;
        size_t len;
        assert_int_equal(pgspout_row_json(s, r, &j, &len), PGSPOUT_OK);
        assert_string_equal(j, "{}");
    }
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(n, 3);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
}

/* Server-side view of a session (second connection). */
static char *backend_field(pgspout_conn *watcher, const char *pid, const char *field)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(%s, '<none>') FROM pg_stat_activity WHERE pid = $1::int", field);
    const char *p[] = {pid};
    return tu_scalar(watcher, sql, 1, p);
}

/* While paused nothing is read: the server blocks writing to its socket
 * (wait_event ClientWrite), and the client's received count stands still. */
static void test_pause_blocks_server(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect(), *w = tu_connect();
    char *pid = tu_scalar(c, "SELECT pg_backend_pid()", 0, NULL);
    long n = 400000;
    char nb[32];
    snprintf(nb, sizeof nb, "%ld", n);
    const char *p[] = {nb};
    pgspout_stream *s = NULL;
    /* ~400-byte rows: far more than the socket buffers hold */
    assert_int_equal(pgspout_stream_open(c,
                                         "SELECT i, repeat(md5(i::text), 12) FROM "
                                         "(SELECT generate_series(1, $1::int) AS i) g",
                                         1, p, NULL, &s),
                     PGSPOUT_OK);
    const pgspout_row *r;
    uint64_t got = 0;
    for (int i = 0; i < 10; i++, got++)
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    const pgspout_chunk *ch;
    int rc;
    while ((rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch)) == PGSPOUT_OK)
        got += (uint64_t)pgspout_chunk_nrows(ch);
    assert_int_equal(rc, PGSPOUT_PAUSED);
    pgspout_stats st1 = {.size = sizeof st1}, st2 = {.size = sizeof st2};
    pgspout_stream_stats(s, &st1);
    char *ev = NULL;
    for (int i = 0; i < 50; i++) { /* up to 5 s for the server to fill the socket */
        tu_sleep_ms(100);
        free(ev);
        ev = backend_field(w, pid, "wait_event");
        if (!strcmp(ev, "ClientWrite"))
            break;
    }
    char *stt = backend_field(w, pid, "state");
    pgspout_stream_stats(s, &st2);
    print_message("paused: server wait_event %s, state %s; received %" PRIu64 " -> %" PRIu64
                  " of %ld\n",
                  ev, stt, st1.rows_received, st2.rows_received, n);
    assert_string_equal(ev, "ClientWrite");
    assert_string_equal(stt, "active");
    assert_int_equal(st1.rows_received, st2.rows_received);
    assert_true(st2.rows_received < (uint64_t)n);
    free(ev);
    free(stt);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_OK);
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        got++;
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(got, (uint64_t)n);
    pgspout_stream_close(s);
    free(pid);
    pgspout_conn_close(w);
    pgspout_conn_close(c);
}

/* Cancel from another thread while next is blocked on a silent server: the
 * wait is interrupted at once, and the server query is really stopped. */
static void test_cancel_while_blocked(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect(), *w = tu_connect();
    char *pid = tu_scalar(c, "SELECT pg_backend_pid()", 0, NULL);
    /* rows big enough to be flushed one by one, then 30 s of silence; one
     * row per chunk, so that the chunked transport too hands the first row
     * over before the silence (it holds a chunk until it is full) */
    pgspout_options *o = tu_opts("chunk_rows", "1", NULL);
    pgspout_stream *s = open_sql(c,
                                 "SELECT i, repeat('x', 20000), pg_sleep(CASE WHEN i = 3 THEN 30 "
                                 "ELSE 0 END) FROM generate_series(1, 5) i",
                                 o);
    pgspout_options_free(o);
    canceller k;
    memset(&k, 0, sizeof k);
    k.s = s;
    k.after = 1;
    pthread_t th;
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pthread_create(&th, NULL, canceller_main, &k), 0);
    atomic_store(&k.rows, 1);
    int rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        ;
    double t_end = tu_now();
    pthread_join(th, NULL);
    assert_int_equal(k.rc_cancel, PGSPOUT_OK);
    assert_int_equal(rc, PGSPOUT_ECANCELLED);
    if (t_end - k.t_cancel > tu_slack(2))
        fail_msg("next returned %.2f s after the cancel", t_end - k.t_cancel);
    pgspout_stream_close(s);
    char *stt = backend_field(w, pid, "state");
    assert_string_equal(stt, "idle");
    free(stt);
    tu_expect_scalar(c, "SELECT 'after'", "after");
    free(pid);
    pgspout_conn_close(w);
    pgspout_conn_close(c);
}

typedef struct conn_canceller {
    pgspout_conn *c;
    int rc;
} conn_canceller;

static void *conn_cancel_main(void *arg)
{
    conn_canceller *k = arg;
    tu_sleep_ms(300);
    k->rc = pgspout_conn_cancel(k->c);
    return NULL;
}

/* pgspout_conn_cancel from another thread stops an open still waiting for
 * its first result: the stream ends cancelled. */
static void test_conn_cancel_during_open(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    /* on an idle connection: nothing to cancel, no harm done */
    assert_int_equal(pgspout_conn_cancel(c), PGSPOUT_OK);
    tu_expect_scalar(c, "SELECT 'idle cancel'", "idle cancel");
    conn_canceller k = {c, 99};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, conn_cancel_main, &k), 0);
    pgspout_stream *s = NULL;
    double t0 = tu_now();
    int rc = pgspout_stream_open(c, "SELECT pg_sleep(30)", 0, NULL, NULL, &s);
    double took = tu_now() - t0;
    pthread_join(th, NULL);
    assert_int_equal(k.rc, PGSPOUT_OK);
    assert_true(took < tu_slack(5));
    assert_non_null(s);
    print_message("open cancelled by conn_cancel: %s, state %s, sqlstate %s: %s\n",
                  pgspout_code_name(rc), pgspout_state_name(pgspout_stream_state(s)),
                  pgspout_stream_sqlstate(s), pgspout_stream_error(s));
    int st = pgspout_stream_state(s);
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 'after'", "after");
    pgspout_conn_close(c);
    if (rc != PGSPOUT_ECANCELLED || st != PGSPOUT_STATE_CANCELLED)
        fail_msg("open cancelled with pgspout_conn_cancel: %s / state %s, want ECANCELLED / "
                 "cancelled",
                 pgspout_code_name(rc), pgspout_state_name(st));
}

/* Parameters the server rejects: invalid UTF-8. */
static void test_invalid_utf8_param(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    const char *p[] = {"ab\xff\xfe"};
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, "SELECT $1::text", 1, p, NULL, &s);
    assert_int_equal(rc, PGSPOUT_ESQL);
    assert_string_equal(pgspout_stream_sqlstate(s), "22021");
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT 'ok'", "ok");
    pgspout_conn_close(c);
}

/* Several connections streaming at once from different threads. */
typedef struct worker {
    long n;
    int rc;
    uint64_t rows;
    char md5[33];
    char err[256];
} worker;

static void *worker_main(void *arg)
{
    worker *wk = arg;
    pgspout_conn *c = NULL;
    if (pgspout_connect(tu_dsn(), &c) != PGSPOUT_OK) {
        snprintf(wk->err, sizeof wk->err, "connect: %s", pgspout_conn_error(c));
        wk->rc = -100;
        pgspout_conn_close(c);
        return NULL;
    }
    char nb[32];
    snprintf(nb, sizeof nb, "%ld", wk->n);
    const char *p[] = {nb};
    pgspout_options *o = pgspout_options_new();
    pgspout_options_set(o, "chunk_rows", "500");
    pgspout_stream *s = NULL;
    wk->rc = pgspout_stream_open(c, PAIRS_SQL, 1, p, o, &s);
    if (wk->rc == PGSPOUT_OK) {
        agg a;
        agg_init(&a);
        const pgspout_row *r;
        while ((wk->rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
            agg_row(&a, r);
        wk->rows = a.bad_order ? 0 : a.rows;
        tu_md5_hex(&a.md5, wk->md5);
    }
    if (wk->rc != PGSPOUT_DONE && s)
        snprintf(wk->err, sizeof wk->err, "%s", pgspout_stream_error(s));
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
    return NULL;
}

static void test_concurrent_connections(void **state)
{
    (void)state;
    enum { W = 6 };
    worker wk[W];
    pthread_t th[W];
    for (int i = 0; i < W; i++) {
        memset(&wk[i], 0, sizeof wk[i]);
        wk[i].n = 30000 + i * 1000;
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &wk[i]), 0);
    }
    for (int i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    pgspout_conn *c = tu_connect();
    for (int i = 0; i < W; i++) {
        if (wk[i].rc != PGSPOUT_DONE)
            fail_msg("worker %d: %d %s", i, wk[i].rc, wk[i].err);
        assert_int_equal(wk[i].rows, (uint64_t)wk[i].n);
        char want[33];
        server_pairs_md5(c, wk[i].n, want);
        assert_string_equal(wk[i].md5, want);
    }
    pgspout_conn_close(c);
}

/* "The library never prints": server notices and warnings must not reach
 * stderr (libpq's default notice processor prints them there). */
static int hook_calls;
static void count_hook(int level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    (void)ud;
    hook_calls++;
}

static void test_never_prints(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_set_log_hook(count_hook, NULL);
    hook_calls = 0;
    char path[] = "/tmp/pgspout_stderr_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    /* no assertions while stderr is redirected */
    static const char *const sqls[] = {
        "DO $$BEGIN RAISE NOTICE 'pgspout-notice-marker'; END$$",
        "DO $$BEGIN RAISE WARNING 'pgspout-warning-marker'; END$$",
        "DROP TABLE IF EXISTS pgspout_no_such_table_marker",
        "SELECT 1/0",
        "SELEC 1",
    };
    int rcs[5];
    for (int i = 0; i < 5; i++) {
        pgspout_stream *s = NULL;
        rcs[i] = pgspout_stream_open(c, sqls[i], 0, NULL, NULL, &s);
        const pgspout_row *r;
        if (rcs[i] == PGSPOUT_OK)
            rcs[i] = pgspout_stream_next(s, &r);
        pgspout_stream_close(s);
    }
    pgspout_conn *bad = NULL;
    pgspout_connect("host=127.0.0.1 port=1 user=x dbname=x", &bad);
    pgspout_conn_close(bad);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    pgspout_set_log_hook(NULL, NULL);
    char buf[2048] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_int_equal(rcs[0], PGSPOUT_DONE);
    assert_int_equal(rcs[1], PGSPOUT_DONE);
    assert_int_equal(rcs[2], PGSPOUT_DONE);
    assert_int_equal(rcs[3], PGSPOUT_ESQL);
    assert_int_equal(rcs[4], PGSPOUT_ESQL);
    print_message("log hook calls for 3 server notices: %d\n", hook_calls);
    tu_expect_scalar(c, "SELECT 'quiet'", "quiet");
    pgspout_conn_close(c);
    if (n > 0) {
        buf[n] = 0;
        fail_msg("the library wrote %zd bytes to stderr:\n%s", n, buf);
    }
}

int main(void)
{
    int gate = tu_db_gate("test_stream");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_next),
        cmocka_unit_test(test_sizes_chunks),
        cmocka_unit_test(test_million_rows),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_types_text_form),
        cmocka_unit_test(test_column_names),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_params_not_interpolated),
        cmocka_unit_test(test_wrong_param_count),
        cmocka_unit_test(test_json_single_column),
        cmocka_unit_test(test_json_multi_column),
        cmocka_unit_test(test_chunk_ndjson),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_error_mid_stream),
        cmocka_unit_test(test_pause_resume_same_thread),
        cmocka_unit_test(test_pause_from_other_thread),
        cmocka_unit_test(test_nonblocking_event_loop),
        cmocka_unit_test(test_event_loop_descriptor),
        cmocka_unit_test(test_cancel_from_other_thread),
        cmocka_unit_test(test_cancel_same_thread),
        cmocka_unit_test(test_close_mid_stream_reuse),
        cmocka_unit_test(test_state_transitions),
        cmocka_unit_test(test_null_pointers),
        cmocka_unit_test(test_bad_options_via_stream),
        cmocka_unit_test(test_busy_connection),
        cmocka_unit_test(test_next_after_conn_close),
        cmocka_unit_test(test_bad_dsn),
        cmocka_unit_test(test_auth_failure),
        cmocka_unit_test(test_never_prints),
        cmocka_unit_test(test_mixed_next_and_chunk),
        cmocka_unit_test(test_zero_columns),
        cmocka_unit_test(test_pause_blocks_server),
        cmocka_unit_test(test_cancel_while_blocked),
        cmocka_unit_test(test_transport_chunk_rows),
        cmocka_unit_test(test_transport_held_rows),
        cmocka_unit_test(test_conn_cancel_during_open),
        cmocka_unit_test(test_invalid_utf8_param),
        cmocka_unit_test(test_concurrent_connections),
        cmocka_unit_test(test_conninfo_forms),
        cmocka_unit_test(test_copy_rejected),
    };
    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
