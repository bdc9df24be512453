/* test_partition.c - exported snapshots, partition plans and partitions read
 * in parallel while another connection writes (issue 16). Every check
 * compares what the partitions read with what the server says about the
 * same snapshot (count, sum and md5 of the sorted ids), and with the table
 * as it is now, which the writer changed. Needs PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define NROWS 20000

/* Run sql to its end (rows read and dropped); it must succeed. */
static void exec_ok(pgspout_conn *c, const char *sql)
{
    pgspout_stream *s;
    const pgspout_row *row;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK)
        ;
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", sql, s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    pgspout_stream_close(s);
}

static int setup(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    exec_ok(c, "DROP TABLE IF EXISTS part_t CASCADE");
    exec_ok(c, "CREATE TABLE part_t (id bigint PRIMARY KEY, k int, pad text)");
    /* k: NULL for every 13th row, so the key plan must place NULL keys */
    exec_ok(c, "INSERT INTO part_t SELECT g, CASE WHEN g % 13 = 0 THEN NULL ELSE (g * 7919) % "
               "20000 END, repeat('x', 40) FROM generate_series(1, 20000) g");
    exec_ok(c, "ANALYZE part_t");
    pgspout_conn_close(c);
    return 0;
}

/* First value of sql's only row, read in snapshot id (malloc'd). */
static char *snap_scalar(pgspout_conn *c, const char *snap, const char *sql)
{
    pgspout_options *o = tu_opts("snapshot", snap, NULL);
    pgspout_stream *s;
    const pgspout_row *row;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("%s: %s", sql, s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_OK);
    char *v = strdup(pgspout_row_value(row, 0, NULL));
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_DONE);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    return v;
}

#define ORACLE_SQL                                                                                 \
    "SELECT count(*) || ' ' || coalesce(sum(id), 0) || ' ' || "                                    \
    "md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM part_t"

/* ------------------------------------------------------------ the writer */

typedef struct writer {
    pthread_t th;
    atomic_int stop;
    atomic_int batches;
    char err[256];
} writer;

/* Committed changes, one batch after another: insert new rows, delete old
 * ones, move some rows to other blocks (an UPDATE writes a new version). */
static void *writer_main(void *arg)
{
    writer *w = arg;
    pgspout_conn *c;
    if (pgspout_connect(tu_dsn(), &c) != PGSPOUT_OK) {
        snprintf(w->err, sizeof w->err, "connect: %s", pgspout_conn_error(c));
        pgspout_conn_close(c);
        return NULL;
    }
    for (int b = 0; !atomic_load(&w->stop) && b < 500; b++) {
        char n[32];
        snprintf(n, sizeof n, "%d", b);
        const char *p[] = {n};
        static const char *const sql[] = {
            "INSERT INTO part_t SELECT 100000 + $1::int * 100 + g, g, 'new' FROM "
            "generate_series(1, 50) g",
            "DELETE FROM part_t WHERE id IN (SELECT id FROM part_t WHERE id < 100000 AND id % "
            "97 = $1::int % 97 LIMIT 20)",
            "UPDATE part_t SET pad = 'moved' || $1 WHERE id IN (SELECT id FROM part_t WHERE "
            "id < 100000 ORDER BY id DESC LIMIT 10 OFFSET $1::int * 10)"};
        for (int i = 0; i < 3; i++) {
            pgspout_stream *s;
            const pgspout_row *row;
            int rc = pgspout_stream_open(c, sql[i], 1, p, NULL, &s);
            while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK)
                ;
            if (rc != PGSPOUT_DONE && w->err[0] == '\0')
                snprintf(w->err, sizeof w->err, "%s: %s", sql[i],
                         s ? pgspout_stream_error(s) : pgspout_conn_error(c));
            pgspout_stream_close(s);
        }
        atomic_fetch_add(&w->batches, 1);
    }
    pgspout_conn_close(c);
    return NULL;
}

static void writer_start(writer *w)
{
    memset(w, 0, sizeof *w);
    assert_int_equal(pthread_create(&w->th, NULL, writer_main, w), 0);
    /* changes committed after the export, before any partition reads */
    while (atomic_load(&w->batches) < 2 && w->err[0] == '\0')
        tu_sleep_ms(5);
}

static void writer_stop(writer *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->th, NULL);
    if (w->err[0])
        fail_msg("writer: %s", w->err);
    assert_true(atomic_load(&w->batches) >= 2);
}

/* ------------------------------------------------------- partition readers */

typedef struct reader {
    pthread_t th;
    const pgspout_plan *plan;
    int part;
    int64_t *ids;
    size_t n, cap;
    int writer_batches_at_start, writer_batches_at_end;
    writer *w;
    char err[512];
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    pgspout_conn *c;
    if (pgspout_connect(tu_dsn(), &c) != PGSPOUT_OK) {
        snprintf(r->err, sizeof r->err, "connect: %s", pgspout_conn_error(c));
        pgspout_conn_close(c);
        return NULL;
    }
    pgspout_options *o = pgspout_options_new();
    pgspout_options_set(o, "chunk_rows", "200");
    pgspout_stream *s;
    const pgspout_row *row;
    r->writer_batches_at_start = r->w ? atomic_load(&r->w->batches) : 0;
    int rc = pgspout_plan_open(c, r->plan, r->part, o, &s);
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 1024;
            r->ids = realloc(r->ids, r->cap * sizeof *r->ids);
        }
        r->ids[r->n++] = strtoll(pgspout_row_value(row, 0, NULL), NULL, 10);
        if (r->w && r->n % 500 == 0)
            tu_sleep_ms(1); /* let the writer commit while partitions read */
    }
    r->writer_batches_at_end = r->w ? atomic_load(&r->w->batches) : 0;
    if (rc != PGSPOUT_DONE)
        snprintf(r->err, sizeof r->err, "partition %d: %s: %s", r->part, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    pgspout_stream_close(s);
    pgspout_options_free(o);
    /* the partition's transaction ended with its stream: the connection
     * takes a plain query at once */
    char *v = tu_try_scalar(c, "SELECT 1", 0, NULL);
    if (v == NULL || strcmp(v, "1") != 0)
        snprintf(r->err, sizeof r->err, "partition %d: connection not reusable", r->part);
    free(v);
    pgspout_conn_close(c);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Read every partition of plan, in parallel threads (one connection each),
 * and render "count sum md5(sorted ids joined by ',')" as ORACLE_SQL does.
 * counts (when not NULL) gets each partition's row count. */
static char *read_all(const pgspout_plan *plan, writer *w, size_t *counts)
{
    int n = pgspout_plan_npartitions(plan);
    reader *r = calloc((size_t)n, sizeof *r);
    for (int i = 0; i < n; i++) {
        r[i].plan = plan;
        r[i].part = i;
        r[i].w = w;
        assert_int_equal(pthread_create(&r[i].th, NULL, reader_main, &r[i]), 0);
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(r[i].th, NULL);
        if (r[i].err[0])
            fail_msg("%s", r[i].err);
        total += r[i].n;
        if (counts)
            counts[i] = r[i].n;
    }
    int64_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].n > 0) /* an empty partition has no array */
            memcpy(all + at, r[i].ids, r[i].n * sizeof *all);
        at += r[i].n;
        free(r[i].ids);
    }
    qsort(all, total, sizeof *all, cmp_i64);
    tu_md5 m;
    tu_md5_init(&m);
    long long sum = 0;
    char num[32];
    for (size_t i = 0; i < total; i++) {
        int len = snprintf(num, sizeof num, "%s%lld", i ? "," : "", (long long)all[i]);
        tu_md5_update(&m, num, (size_t)len);
        sum += all[i];
    }
    char hex[33];
    tu_md5_hex(&m, hex);
    char *out;
    assert_true(asprintf(&out, "%zu %lld %s", total, sum, hex) > 0);
    free(all);
    free(r);
    return out;
}

/* The plan through JSON and back, as a worker receives it. */
static pgspout_plan *shipped(const pgspout_plan *p)
{
    char *json = pgspout_plan_json(p);
    assert_non_null(json);
    pgspout_plan *back = NULL;
    char *err = NULL;
    int rc = pgspout_plan_from_json(json, &back, &err);
    if (rc != PGSPOUT_OK)
        fail_msg("plan_from_json: %s", err ? err : "?");
    char *again = pgspout_plan_json(back);
    assert_string_equal(json, again);
    pgspout_free(json);
    pgspout_free(again);
    return back;
}

/* Partitions read in the snapshot while the writer commits: together they
 * equal one serial read in the same snapshot, which differs from the table
 * as it is now; every row exactly once (count, sum and md5 of sorted ids). */
static void check_consistent(pgspout_plan_spec *spec, int expect_parts)
{
    pgspout_snapshot *snap;
    int rc = pgspout_snapshot_export(tu_dsn(), NULL, &snap);
    if (rc != PGSPOUT_OK)
        fail_msg("export: %s", pgspout_snapshot_error(snap));
    assert_true(pgspout_snapshot_ok(snap));
    const char *id = pgspout_snapshot_id(snap);
    assert_true(strlen(id) > 0);

    writer w;
    writer_start(&w);
    pgspout_conn *c = tu_connect();
    spec->snapshot = id;
    pgspout_plan *plan;
    rc = pgspout_plan_make(c, spec, &plan);
    if (rc != PGSPOUT_OK)
        fail_msg("plan_make: %s", pgspout_conn_error(c));
    assert_string_equal(pgspout_plan_snapshot(plan), id);
    assert_int_equal(pgspout_plan_npartitions(plan), expect_parts);
    pgspout_plan *worker_plan = shipped(plan);

    size_t counts[64] = {0};
    char *parts = read_all(worker_plan, &w, counts);
    char *serial = snap_scalar(c, id, ORACLE_SQL);
    writer_stop(&w);
    char *now = tu_scalar(c, ORACLE_SQL, 0, NULL);
    print_message("partitions %s\nserial     %s\nnow        %s\n", parts, serial, now);
    assert_string_equal(parts, serial);
    assert_string_not_equal(parts, now); /* the snapshot was shared, not each one's own */
    for (int i = 0; i < expect_parts; i++)
        assert_true(counts[i] > 0); /* the ranges split the rows */

    free(parts);
    free(serial);
    free(now);
    pgspout_plan_free(worker_plan);
    pgspout_plan_free(plan);
    pgspout_conn_close(c);
    pgspout_snapshot_close(snap);
}

static void test_block_plan(void **state)
{
    (void)state;
    const char *cols[] = {"id", "k"};
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    spec.table = "part_t";
    spec.ncolumns = 2;
    spec.columns = cols;
    spec.npartitions = 4;
    check_consistent(&spec, 4);
}

static void test_block_plan_with_where(void **state)
{
    (void)state;
    const char *cols[] = {"id"};
    const char *params[] = {"3"};
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    spec.table = "public.part_t";
    spec.ncolumns = 1;
    spec.columns = cols;
    spec.where = "id % $1::int <> 0 -- a comment ends at the line";
    spec.nparams = 1;
    spec.params = params;
    spec.npartitions = 3;
    pgspout_conn *c = tu_connect();
    pgspout_plan *plan;
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_OK);
    assert_int_equal(pgspout_plan_nparams(plan, 1), 3); /* the where's, then two bounds */
    assert_string_equal(pgspout_plan_params(plan, 1)[0], "3");
    assert_non_null(strstr(pgspout_plan_sql(plan, 1), "ctid >= $2::tid AND ctid < $3::tid"));
    assert_string_equal(pgspout_plan_table(plan), "public.part_t");
    char *parts = read_all(plan, NULL, NULL);
    char *serial = tu_scalar(c,
                             "SELECT count(*) || ' ' || sum(id) || ' ' || md5(string_agg(id::text, "
                             "',' ORDER BY id)) FROM part_t WHERE id % 3 <> 0",
                             0, NULL);
    assert_string_equal(parts, serial);
    free(parts);
    free(serial);
    pgspout_plan_free(plan);
    pgspout_conn_close(c);
}

static void test_key_plan_histogram(void **state)
{
    (void)state;
    const char *cols[] = {"id", "pad"};
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    spec.table = "part_t";
    spec.ncolumns = 2;
    spec.columns = cols;
    spec.npartitions = 4;
    spec.key = "k";
    check_consistent(&spec, 4);
}

static void test_key_plan_bounds(void **state)
{
    (void)state;
    /* unsorted and repeated: the server sorts and merges them */
    const char *bounds[] = {"15000", "5000", "5000"};
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    spec.table = "part_t";
    spec.key = "k";
    spec.nbounds = 3;
    spec.bounds = bounds;
    pgspout_conn *c = tu_connect();
    pgspout_plan *plan;
    int rc = pgspout_plan_make(c, &spec, &plan);
    if (rc != PGSPOUT_OK)
        fail_msg("plan_make: %s", pgspout_conn_error(c));
    assert_int_equal(pgspout_plan_npartitions(plan), 3);
    assert_string_equal(pgspout_plan_params(plan, 0)[0], "5000");
    assert_string_equal(pgspout_plan_params(plan, 2)[0], "15000");
    assert_non_null(strstr(pgspout_plan_sql(plan, 0), "k IS NULL"));
    size_t counts[3];
    char *parts = read_all(plan, NULL, counts);
    char *serial = tu_scalar(c, ORACLE_SQL, 0, NULL);
    assert_string_equal(parts, serial);
    char *nulls_and_low =
        tu_scalar(c, "SELECT count(*) FROM part_t WHERE k < 5000 OR k IS NULL", 0, NULL);
    assert_int_equal((long long)counts[0], strtoll(nulls_and_low, NULL, 10));
    free(nulls_and_low);
    free(parts);
    free(serial);
    pgspout_plan_free(plan);

    /* a bound that is not an int: refused by the server's cast */
    const char *bad[] = {"5000", "abc"};
    spec.bounds = bad;
    spec.nbounds = 2;
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_EVALUE);
    assert_null(plan);
    assert_non_null(strstr(pgspout_conn_error(c), "not a value of the key's type"));
    pgspout_conn_close(c);
}

/* Names are resolved by the server, never spliced: injection attempts and
 * wrong names are refused, and nothing ran. */
static void test_bad_names(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_plan *plan = NULL;
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    spec.npartitions = 2;
    static const char *const tables[] = {"part_t; DROP TABLE part_t",
                                         "part_t WHERE false; DROP TABLE part_t --",
                                         "no_such_table", "\"part_t", "pg_catalog.nothing"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        spec.table = tables[i];
        int rc = pgspout_plan_make(c, &spec, &plan);
        if (rc != PGSPOUT_EVALUE)
            fail_msg("table %s: %s", tables[i], pgspout_code_name(rc));
        assert_null(plan);
        assert_non_null(strstr(pgspout_conn_error(c), tables[i]));
    }
    spec.table = "part_t";
    static const char *const columns[] = {
        "id; DROP TABLE part_t", "id, pad", "ID", "\"id\"", "ctid", "xmin"};
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++) {
        spec.ncolumns = 1;
        spec.columns = &columns[i];
        int rc = pgspout_plan_make(c, &spec, &plan);
        if (rc != PGSPOUT_EVALUE)
            fail_msg("column %s: %s", columns[i], pgspout_code_name(rc));
        assert_non_null(strstr(pgspout_conn_error(c), "no column named"));
        spec.ncolumns = 0;
        spec.key = columns[i];
        rc = pgspout_plan_make(c, &spec, &plan);
        if (rc != PGSPOUT_EVALUE)
            fail_msg("key %s: %s", columns[i], pgspout_code_name(rc));
        spec.key = NULL;
    }
    /* a view has no blocks; a bad snapshot id never reaches SQL */
    tu_expect_scalar(c, "SELECT count(*) FROM part_t WHERE id <= 20000", "20000");
    spec.snapshot = "1'; DROP TABLE part_t; --";
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_EVALUE);
    spec.snapshot = NULL;
    spec.npartitions = 0;
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_EINVAL);
    spec.npartitions = 2;
    spec.size = 8;
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_EINVAL);
    spec.size = sizeof spec;

    /* a name that needs quoting comes back quoted by the server */
    exec_ok(c, "DROP TABLE IF EXISTS \"Part T\"");
    exec_ok(c, "CREATE TABLE \"Part T\" AS SELECT g AS \"Id\" FROM generate_series(1, 10) g");
    const char *mixed[] = {"Id"};
    spec.table = "\"Part T\"";
    spec.ncolumns = 1;
    spec.columns = mixed;
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_OK);
    assert_non_null(
        strstr(pgspout_plan_sql(plan, 0), "SELECT \"Id\" FROM public.\"Part T\" WHERE"));
    char *parts = read_all(plan, NULL, NULL);
    assert_string_equal(parts, "10 55 6c2274983ce1ac0ffaa6344a06cdd6b7");
    free(parts);
    pgspout_plan_free(plan);
    exec_ok(c, "CREATE OR REPLACE VIEW part_v AS SELECT * FROM part_t");
    spec.table = "part_v";
    spec.ncolumns = 0;
    assert_int_equal(pgspout_plan_make(c, &spec, &plan), PGSPOUT_EVALUE);
    assert_non_null(strstr(pgspout_conn_error(c), "block ranges need one"));
    /* the table is still there */
    tu_expect_scalar(c, "SELECT count(*) FROM part_t WHERE id <= 20000", "20000");
    pgspout_conn_close(c);
}

/* Once the holder closes, importing fails with a clear error and leaves the
 * connection usable; a snapshot stream ends its own transaction. */
static void test_snapshot_lifetime(void **state)
{
    (void)state;
    pgspout_snapshot *snap;
    assert_int_equal(pgspout_snapshot_export(tu_dsn(), NULL, &snap), PGSPOUT_OK);
    char id[80];
    snprintf(id, sizeof id, "%s", pgspout_snapshot_id(snap));
    pgspout_conn *c = tu_connect();
    char *before = snap_scalar(c, id, "SELECT count(*) FROM part_t");
    tu_expect_scalar(c, "INSERT INTO part_t VALUES (900001, 1, 'late') RETURNING 1", "1");
    /* the same connection imports again (its transaction ended with the
     * stream) and still sees the snapshot, not the insert */
    char *again = snap_scalar(c, id, "SELECT count(*) FROM part_t");
    assert_string_equal(before, again);

    /* a stream stopped early ends its transaction too */
    pgspout_options *o = tu_opts("snapshot", id, "chunk_rows", "10", NULL);
    pgspout_stream *s;
    const pgspout_row *row;
    assert_int_equal(pgspout_stream_open(c, "SELECT id FROM part_t", 0, NULL, o, &s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_OK);
    pgspout_stream_close(s);
    char *now = tu_scalar(c, "SELECT count(*) FROM part_t", 0, NULL);
    assert_string_not_equal(now, before); /* outside the snapshot again */
    assert_int_equal(pgspout_stream_open(c, "SELECT id FROM part_t", 0, NULL, o, &s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
    pgspout_stream_close(s);

    /* inside the caller's transaction: refused, nothing changed */
    assert_int_equal(pgspout_stream_open(c, "BEGIN", 0, NULL, NULL, &s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_DONE);
    pgspout_stream_close(s);
    assert_int_equal(pgspout_stream_open(c, "SELECT 1", 0, NULL, o, &s), PGSPOUT_ESTATE);
    assert_null(s);
    assert_non_null(strstr(pgspout_conn_error(c), "inside a transaction"));
    exec_ok(c, "ROLLBACK");
    assert_int_equal(pgspout_stream_open(c, "COMMIT", 0, NULL, o, &s), PGSPOUT_EVALUE);

    pgspout_snapshot_close(snap);
    int rc = pgspout_stream_open(c, "SELECT count(*) FROM part_t", 0, NULL, o, &s);
    assert_int_equal(rc, PGSPOUT_ESQL);
    assert_non_null(s);
    print_message("closed snapshot: %s\n", pgspout_stream_error(s));
    /* 22023 once the exporter's snapshot file is gone; 55000 ("the source
     * process is not running anymore") while it lingers */
    assert_true(strcmp(pgspout_stream_sqlstate(s), "22023") == 0 ||
                strcmp(pgspout_stream_sqlstate(s), "55000") == 0);
    assert_non_null(strstr(pgspout_stream_error(s), "could not import snapshot"));
    assert_non_null(strstr(pgspout_stream_error(s), id));
    pgspout_stream_close(s);
    tu_expect_scalar(c, "SELECT count(*) > 0 FROM part_t", "t"); /* usable, outside any tx */

    /* a malformed id never reaches the server */
    pgspout_options *bad = pgspout_options_new();
    assert_int_equal(pgspout_options_set(bad, "snapshot", "x'; DROP TABLE part_t; --"),
                     PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(bad, "snapshot", ""), PGSPOUT_OK);
    pgspout_options_free(bad);
    pgspout_options_free(o);
    free(before);
    free(again);
    free(now);
    pgspout_conn_close(c);

    /* a failed export gives a handle that says why */
    assert_int_equal(
        pgspout_snapshot_export("host=127.0.0.1 port=1 connect_timeout=2", NULL, &snap),
        PGSPOUT_ECONNECT);
    assert_string_equal(pgspout_snapshot_id(snap), "");
    assert_true(strlen(pgspout_snapshot_error(snap)) > 0);
    assert_false(pgspout_snapshot_ok(snap));
    pgspout_snapshot_close(snap);
    pgspout_snapshot_close(NULL);
}

static void test_plan_json(void **state)
{
    (void)state;
    static const char good[] =
        "{\"pgspout_plan\": 1, \"extra\": {\"a\": [1, 2.5e3, true, null]}, \"snapshot\": "
        "\"00000003-0000001B-1\", \"partitions\": [{\"sql\": \"SELECT $1::text, \\u00e9\\\"\\n\","
        " \"params\": [\"a\\\\b\", null, \"\\ud83d\\ude00\"]}]}";
    pgspout_plan *p;
    char *err;
    assert_int_equal(pgspout_plan_from_json(good, &p, &err), PGSPOUT_OK);
    assert_null(err);
    assert_int_equal(pgspout_plan_npartitions(p), 1);
    assert_string_equal(pgspout_plan_snapshot(p), "00000003-0000001B-1");
    assert_string_equal(pgspout_plan_sql(p, 0), "SELECT $1::text, \xc3\xa9\"\n");
    assert_int_equal(pgspout_plan_nparams(p, 0), 3);
    assert_string_equal(pgspout_plan_params(p, 0)[0], "a\\b");
    assert_null(pgspout_plan_params(p, 0)[1]);
    assert_string_equal(pgspout_plan_params(p, 0)[2], "\xf0\x9f\x98\x80");
    assert_null(pgspout_plan_sql(p, 1));
    assert_int_equal(pgspout_plan_nparams(p, -1), -1);
    pgspout_plan *back = shipped(p);
    pgspout_plan_free(back);
    pgspout_plan_free(p);
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"pgspout_plan\":2,\"partitions\":[{\"sql\":\"x\"}]}",
        "{\"pgspout_plan\":1,\"partitions\":[]}",
        "{\"pgspout_plan\":1,\"partitions\":[{}]}",
        "{\"pgspout_plan\":1,\"partitions\":[{\"sql\":\"x\"}]} trailing",
        "{\"pgspout_plan\":1,\"snapshot\":\"1'; DROP\",\"partitions\":[{\"sql\":\"x\"}]}",
        "{\"pgspout_plan\":1,\"partitions\":[{\"sql\":\"x\\u0000\"}]}",
        "{\"pgspout_plan\":1,\"partitions\":[{\"sql\":\"x\",\"params\":[1]}]}",
        "{\"pgspout_plan\":1,\"partitions\":[{\"sql\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err = NULL;
        int rc = pgspout_plan_from_json(bad[i], &p, &err);
        if (rc != PGSPOUT_EVALUE)
            fail_msg("%s: %s", bad[i], pgspout_code_name(rc));
        assert_null(p);
        assert_non_null(err);
        pgspout_free(err);
    }
    assert_int_equal(pgspout_plan_from_json(NULL, &p, NULL), PGSPOUT_EINVAL);
}

int main(void)
{
    int gate = tu_db_gate("test_partition");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_block_plan, setup),
        cmocka_unit_test_setup(test_block_plan_with_where, setup),
        cmocka_unit_test_setup(test_key_plan_histogram, setup),
        cmocka_unit_test_setup(test_key_plan_bounds, setup),
        cmocka_unit_test_setup(test_bad_names, setup),
        cmocka_unit_test_setup(test_snapshot_lifetime, setup),
        cmocka_unit_test(test_plan_json),
    };
    return cmocka_run_group_tests_name("partition", tests, NULL, NULL);
}
