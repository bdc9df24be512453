/* test_registry.c - the registry on connection pools, against a real
 * server: pgspout_registry_open reuses backends through the registry's pool
 * (and pool=off does not), pgspout_registry_open_pool on a caller's pool,
 * the connection back in the pool after a stream's end, error, cancel (with
 * and without a fetch running), close and reap, nothing a stream leaves
 * behind (session settings, an open transaction, LISTEN, a cancel) reaching
 * the next stream on the same backend, exhaustion, and the reaper's
 * pgspout_pool_maintain tick. Properties, not timings. Needs
 * PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static pgspout_options *opts(const char *key, ...)
{
    pgspout_options *o = pgspout_options_new();
    assert_non_null(o);
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (pgspout_options_set(o, k, v) != PGSPOUT_OK)
            fail_msg("option %s=%s: %s", k, v, pgspout_options_error(o));
    }
    va_end(ap);
    return o;
}

static pgspout_pool *new_pool(const char *app, const char *max_size, const char *acquire)
{
    pgspout_options *o =
        opts("application_name", app, "max_size", max_size, "acquire_timeout", acquire, NULL);
    pgspout_pool *p = NULL;
    assert_int_equal(pgspout_pool_new(tu_dsn(), o, &p), PGSPOUT_OK);
    pgspout_options_free(o);
    return p;
}

static pgspout_pool_stats pstats(pgspout_pool *p)
{
    pgspout_pool_stats st = PGSPOUT_POOL_STATS_INIT;
    assert_int_equal(pgspout_pool_stats_get(p, &st), PGSPOUT_OK);
    return st;
}

static uint64_t open_on(pgspout_pool *p, const char *sql, const pgspout_options *o)
{
    uint64_t id = 0;
    char *err = NULL;
    int rc = pgspout_registry_open_pool(p, sql, 0, NULL, o, &id, &err);
    if (rc != PGSPOUT_OK)
        fail_msg("registry_open_pool(%s): %s: %s", sql, pgspout_code_name(rc), err ? err : "");
    pgspout_free(err);
    assert_true(id > 0);
    return id;
}

/* Fetch everything; returns the final code (DONE or an error) and the
 * NDJSON in *all (malloc'd) when all is not NULL. */
static int drain(uint64_t id, char **all)
{
    tu_buf b = {0};
    int rc;
    for (;;) {
        char *out = NULL;
        size_t len = 0;
        int n = 0;
        rc = pgspout_registry_fetch(id, 0, &out, &len, &n, NULL);
        if (rc != PGSPOUT_OK)
            break;
        tu_buf_add(&b, out, len);
        pgspout_free(out);
    }
    if (all) {
        tu_buf_addc(&b, '\0');
        *all = b.data;
    } else {
        tu_buf_free(&b);
    }
    return rc;
}

/* The first number after the first ':' of the NDJSON of a one-column row. */
static long first_value(const char *js)
{
    const char *c = js ? strchr(js, ':') : NULL;
    if (!c)
        fail_msg("no value in \"%s\"", js ? js : "(null)");
    return atol(c + 1);
}

/* The one value a one-row query gives, through the registry on pool p
 * (NULL: pgspout_registry_open with o). */
static char *one_row(pgspout_pool *p, const char *sql, const pgspout_options *o)
{
    uint64_t id = 0;
    char *err = NULL, *all = NULL;
    int rc = p ? pgspout_registry_open_pool(p, sql, 0, NULL, o, &id, &err)
               : pgspout_registry_open(tu_dsn(), sql, 0, NULL, o, &id, &err);
    if (rc != PGSPOUT_OK)
        fail_msg("registry open(%s): %s: %s", sql, pgspout_code_name(rc), err ? err : "");
    pgspout_free(err);
    assert_int_equal(drain(id, &all), PGSPOUT_DONE);
    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    return all;
}

static long pid_via(pgspout_pool *p, const pgspout_options *o)
{
    char *js = one_row(p, "SELECT pg_backend_pid() AS pid", o);
    long pid = first_value(js);
    free(js);
    return pid;
}

/* Client backends with application_name app (admin connection). */
static long backends(pgspout_conn *admin, const char *app)
{
    const char *params[] = {app};
    return tu_scalar_long(admin,
                          "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                          "AND backend_type = 'client backend'",
                          1, params);
}

/* Wait (bounded) until the pool has nothing in use: the reaper thread may
 * be handing a connection back as we look. */
static void wait_in_use(pgspout_pool *p, int want)
{
    double until = tu_now() + tu_slack(10);
    while (pstats(p).in_use != want && tu_now() < until)
        tu_sleep_ms(10);
    assert_int_equal(pstats(p).in_use, want);
}

/* ------------------------------------------------------------------ tests */

/* Sequential streams through pgspout_registry_open run on one backend: the
 * registry's pool for the conninfo and options; pool=off opens one per
 * stream. */
static void test_open_reuses_backend(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    pgspout_options *o = opts("application_name", "pgs_reg_reuse", NULL);
    long first = pid_via(NULL, o);
    for (int i = 0; i < 20; i++)
        assert_int_equal(pid_via(NULL, o), first);
    assert_true(backends(admin, "pgs_reg_reuse") <= 1);

    pgspout_options *off = opts("application_name", "pgs_reg_nopool", "pool", "off", NULL);
    long pids[5];
    for (int i = 0; i < 5; i++) {
        pids[i] = pid_via(NULL, off);
        for (int k = 0; k < i; k++)
            assert_int_not_equal(pids[k], pids[i]);
    }
    /* closed at their ends (a backend leaves pg_stat_activity soon after) */
    double until = tu_now() + tu_slack(10);
    while (backends(admin, "pgs_reg_nopool") > 0 && tu_now() < until)
        tu_sleep_ms(20);
    assert_int_equal(backends(admin, "pgs_reg_nopool"), 0);
    pgspout_options_free(off);
    pgspout_options_free(o);
    pgspout_conn_close(admin);
}

/* Threads opening streams at once: no more backends than streams running
 * at the same time, however many streams. */
static void *reuse_worker(void *arg)
{
    const pgspout_options *o = arg;
    for (int i = 0; i < 15; i++) {
        uint64_t id = 0;
        if (pgspout_registry_open(tu_dsn(), "SELECT g FROM generate_series(1, 50) g", 0, NULL, o,
                                  &id, NULL) != PGSPOUT_OK)
            return (void *)1;
        char *out = NULL;
        int rc;
        while ((rc = pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL)) == PGSPOUT_OK)
            pgspout_free(out);
        pgspout_registry_close(id);
        if (rc != PGSPOUT_DONE)
            return (void *)1;
    }
    return NULL;
}

static void test_threads_bounded_backends(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    pgspout_options *o = opts("application_name", "pgs_reg_threads", NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reuse_worker, o), 0);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    long n = backends(admin, "pgs_reg_threads");
    assert_true(n >= 1 && n <= 4); /* 60 streams, at most 4 at once */
    pgspout_options_free(o);
    pgspout_conn_close(admin);
}

/* The connection goes back when the stream ends or fails, before the id is
 * closed; the id keeps answering. */
static void test_back_after_done_and_error(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_done", "1", "0");
    uint64_t id = open_on(p, "SELECT g FROM generate_series(1, 2500) g", NULL);
    assert_int_equal(pstats(p).in_use, 1);
    assert_int_equal(drain(id, NULL), PGSPOUT_DONE);
    assert_int_equal(pstats(p).in_use, 0);
    assert_int_equal(pstats(p).idle, 1);
    char *out = (char *)1;
    assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_DONE);
    assert_null(out);
    char *js = pgspout_registry_stats_json(id);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"state\":\"done\""));
    pgspout_free(js);

    /* max_size 1: the next stream can only run if the first gave back */
    pgspout_options *chunk = opts("chunk_rows", "100", NULL);
    uint64_t bad = open_on(
        p, "SELECT CASE WHEN g = 1500 THEN 1 / (g - g) ELSE g END FROM generate_series(1, 3000) g",
        chunk);
    assert_int_equal(drain(bad, NULL), PGSPOUT_ESQL);
    assert_int_equal(pstats(p).in_use, 0);
    char *err = NULL;
    assert_int_equal(pgspout_registry_fetch(bad, 0, &out, NULL, NULL, &err), PGSPOUT_ESQL);
    assert_non_null(err);
    assert_non_null(strstr(err, "22012"));
    pgspout_free(err);

    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    assert_int_equal(pgspout_registry_close(bad), PGSPOUT_OK);
    assert_int_equal(pstats(p).created, 1); /* one backend served all three */
    pgspout_options_free(chunk);
    pgspout_pool_close(p);
}

static void test_back_after_cancel(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_cancel", "1", "0");
    pgspout_options *o = opts("chunk_rows", "100", NULL);
    long pid = pid_via(p, NULL);
    uint64_t id = open_on(p, "SELECT generate_series(1, 100000000) AS g", o);
    char *out = NULL;
    assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_OK);
    pgspout_free(out);
    assert_int_equal(pgspout_registry_cancel(id), PGSPOUT_OK);
    assert_int_equal(pstats(p).in_use, 0); /* no fetch ran: back at once */
    assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_ECANCELLED);
    /* the same backend, clean: the cancel did not outlive its stream */
    assert_int_equal(pid_via(p, NULL), pid);
    char *js = one_row(p, "SELECT count(*) FROM generate_series(1, 3)", NULL);
    assert_int_equal(first_value(js), 3);
    free(js);
    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    assert_int_equal(pstats(p).created, 1);
    pgspout_options_free(o);
    pgspout_pool_close(p);
}

typedef struct {
    uint64_t id;
    int rc;
} fetch_arg;

static void *blocked_fetch(void *arg)
{
    fetch_arg *a = arg;
    char *out = NULL;
    while ((a->rc = pgspout_registry_fetch(a->id, 0, &out, NULL, NULL, NULL)) == PGSPOUT_OK)
        pgspout_free(out);
    return NULL;
}

/* Cancel while a fetch is blocked on a paused stream in another thread:
 * that fetch ends ECANCELLED and gives the connection back. */
static void test_back_after_cancel_with_fetch(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_cancel2", "1", "0");
    pgspout_options *o = opts("chunk_rows", "100", NULL);
    fetch_arg a = {open_on(p, "SELECT generate_series(1, 100000000) AS g", o), 0};
    char *out = NULL;
    assert_int_equal(pgspout_registry_fetch(a.id, 0, &out, NULL, NULL, NULL), PGSPOUT_OK);
    pgspout_free(out);
    assert_int_equal(pgspout_registry_pause(a.id), PGSPOUT_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, blocked_fetch, &a), 0);
    tu_sleep_ms(200); /* either order is correct; this makes "fetch first" likely */
    assert_int_equal(pgspout_registry_cancel(a.id), PGSPOUT_OK);
    pthread_join(t, NULL);
    assert_int_equal(a.rc, PGSPOUT_ECANCELLED);
    assert_int_equal(pstats(p).in_use, 0);
    assert_int_equal(pgspout_registry_close(a.id), PGSPOUT_OK);
    char *js = one_row(p, "SELECT 7", NULL);
    assert_int_equal(first_value(js), 7);
    free(js);
    pgspout_options_free(o);
    pgspout_pool_close(p);
}

static void test_back_after_close_and_reap(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_close", "1", "0");
    pgspout_options *o = opts("chunk_rows", "100", "idle_timeout", "50ms", NULL);
    uint64_t id = open_on(p, "SELECT generate_series(1, 100000000) AS g", o);
    char *out = NULL;
    assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_OK);
    pgspout_free(out);
    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    assert_int_equal(pstats(p).in_use, 0);

    id = open_on(p, "SELECT generate_series(1, 100000000) AS g", o);
    assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_OK);
    pgspout_free(out);
    tu_sleep_ms(100);
    pgspout_registry_reap(); /* or the background thread did */
    assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_ENOTFOUND);
    wait_in_use(p, 0);
    char *js = one_row(p, "SELECT 11", NULL);
    assert_int_equal(first_value(js), 11);
    free(js);
    assert_int_equal(pstats(p).created, 1);
    pgspout_options_free(o);
    pgspout_pool_close(p);
}

/* What a stream leaves in its session never reaches the next stream on the
 * same backend. */
static void test_no_state_leak(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_leak", "1", "0");
    long pid = pid_via(p, NULL);
    static const char *const leave[] = {
        "SELECT set_config('search_path', 'leak_schema', false)",
        "SET work_mem = '7MB'",
        "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
        "LISTEN pgs_reg_leak",
        "SELECT pg_advisory_lock(4242)",
    };
    pgspout_options *big = opts("chunk_rows", "100", NULL);
    for (size_t i = 0; i < sizeof leave / sizeof leave[0] + 1; i++) {
        if (i < sizeof leave / sizeof leave[0]) {
            char *js = one_row(p, leave[i], NULL);
            free(js);
        } else { /* cancelled mid-stream */
            uint64_t id = open_on(p, "SELECT generate_series(1, 100000000) AS g", big);
            char *out = NULL;
            assert_int_equal(pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL), PGSPOUT_OK);
            pgspout_free(out);
            assert_int_equal(pgspout_registry_cancel(id), PGSPOUT_OK);
            assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
        }
        char *js = one_row(p,
                           "SELECT current_setting('search_path') NOT LIKE '%leak%' AS path, "
                           "current_setting('work_mem') <> '7MB' AS work_mem, "
                           "(SELECT count(*) FROM pg_listening_channels()) = 0 AS listen, "
                           "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "  AND pid = pg_backend_pid()) = 0 AS locks, "
                           "current_setting('transaction_isolation') <> 'serializable' AND "
                           "current_setting('transaction_read_only') = 'off' AS tx",
                           NULL);
        if (strcmp(js, "{\"path\":true,\"work_mem\":true,\"listen\":true,\"locks\":true,"
                       "\"tx\":true}\n") != 0)
            fail_msg("after \"%s\" the next stream saw %s", i < 5 ? leave[i] : "a cancel", js);
        free(js);
        assert_int_equal(pid_via(p, NULL), pid); /* reset, not replaced */
    }
    pgspout_options_free(big);
    pgspout_pool_close(p);
}

/* Advisory locks on key k held by any session (admin connection). */
static long advisory_held(pgspout_conn *admin, const char *k)
{
    const char *params[] = {k};
    return tu_scalar_long(
        admin, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1", 1,
        params);
}

/* The pool's reset follows a registry stream's statement in its pipeline:
 * the server discards the session's state as soon as the statement ends,
 * while the stream still holds its connection (no fetch has met the end),
 * not a round trip later at the hand-back. */
static void test_reset_follows_the_statement(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    pgspout_pool *p = new_pool("pgs_reg_follow", "1", "0");
    long pid = pid_via(p, NULL);
    uint64_t id = open_on(p, "SELECT pg_advisory_lock(4243) IS NOT NULL AS locked", NULL);
    assert_int_equal(pstats(p).in_use, 1);
    /* bounded: the server runs the reset right after the statement */
    double until = tu_now() + tu_slack(10);
    while (advisory_held(admin, "4243") > 0 && tu_now() < until)
        tu_sleep_ms(10);
    assert_int_equal(advisory_held(admin, "4243"), 0);
    assert_int_equal(pstats(p).in_use, 1);
    char *all = NULL;
    assert_int_equal(drain(id, &all), PGSPOUT_DONE);
    assert_string_equal(all, "{\"locked\":true}\n");
    free(all);
    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    assert_int_equal(pstats(p).in_use, 0);

    /* cancels and limits that stop a statement, after which its reset runs:
     * the next stream finds a clean session on the same backend (a cancel
     * that reaches the server late lands on the reset or on an idle
     * session; these vary when it is sent, they cannot force it) */
    static const char *const sizes[] = {"150", "1000", "20000", "1000000"};
    pgspout_options *small = opts("chunk_rows", "100", NULL);
    pgspout_options *limited = opts("chunk_rows", "100", "max_rows", "120", NULL);
    for (int i = 0; i < 16; i++) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "SELECT g, pg_advisory_lock(4244) IS NOT NULL FROM generate_series(1, %s) g",
                 sizes[i % 4]);
        id = open_on(p, sql, i % 2 ? limited : small);
        if (i % 2 == 0) {
            assert_int_equal(pgspout_registry_cancel(id), PGSPOUT_OK);
        } else {
            int rc = drain(id, NULL);
            assert_true(rc == PGSPOUT_DONE);
        }
        assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
        wait_in_use(p, 0);
        char *js = one_row(p,
                           "SELECT pg_backend_pid() AS pid, (SELECT count(*) FROM pg_locks "
                           "WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks",
                           NULL);
        char want[96];
        snprintf(want, sizeof want, "{\"pid\":%ld,\"locks\":0}\n", pid);
        if (strcmp(js, want) != 0)
            fail_msg("round %d (%s rows, %s): %s", i, sizes[i % 4], i % 2 ? "limited" : "cancelled",
                     js);
        free(js);
    }
    assert_int_equal(pstats(p).created, 1);
    pgspout_options_free(small);
    pgspout_options_free(limited);
    pgspout_pool_close(p);
    pgspout_conn_close(admin);
}

static int changed_logged;

static void count_changed(int level, const char *message, void *ud)
{
    (void)level;
    (void)ud;
    if (strstr(message, "result types changed since this connection described it"))
        changed_logged++;
}

/* What the server renders for the rows of sql (a column id orders them):
 * row_to_json, one per line. */
static char *server_ndjson(pgspout_conn *admin, const char *sql)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT coalesce(string_agg(row_to_json(q)::text || E'\\n', '' ORDER BY q.id), '') "
             "FROM (%s) q",
             sql);
    return tu_scalar(admin, q, 0, NULL);
}

/* A registry stream runs a statement its connection described before
 * without describing it again (described.c): the same rows as the server
 * renders, also after DDL changed the result's types in between (rendered
 * with the new types, logged, described anew next time); a type the
 * connection never looked up ends that one run with a clear error, before
 * any row, and the next run renders it. */
static void test_described_again(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    free(tu_scalar(admin, "DROP TABLE IF EXISTS pgs_desc_t", 0, NULL));
    free(tu_scalar(admin, "DROP TYPE IF EXISTS pgs_desc_e", 0, NULL));
    free(tu_scalar(admin,
                   "CREATE TABLE pgs_desc_t AS SELECT g AS id, g * 10 AS v "
                   "FROM generate_series(1, 3) g",
                   0, NULL));
    pgspout_pool *p = new_pool("pgs_reg_desc", "1", "0");
    pgspout_set_log_hook(count_changed, NULL);
    changed_logged = 0;
    const char *sql = "SELECT id, v FROM pgs_desc_t ORDER BY id";
    static const char *const alter[] = {
        NULL, /* the first run describes, the second uses that */
        NULL,
        "ALTER TABLE pgs_desc_t ALTER COLUMN v TYPE text USING 'v' || v",
        "ALTER TABLE pgs_desc_t ALTER COLUMN v TYPE numeric(6,2) USING 1.5",
        NULL,
        "ALTER TABLE pgs_desc_t ALTER COLUMN v TYPE float8 USING 0.1",
        NULL, /* described anew (and remembered) after that change */
    };
    int changes = 0;
    for (size_t i = 0; i < sizeof alter / sizeof alter[0]; i++) {
        if (alter[i]) {
            free(tu_scalar(admin, alter[i], 0, NULL));
            changes += i != 3; /* run 2 re-described: run 3's change is met by a describe */
        }
        char *got = one_row(p, sql, NULL);
        char *want = server_ndjson(admin, sql);
        if (strcmp(got, want) != 0)
            fail_msg("run %zu: got %s, the server renders %s", i, got, want);
        free(got);
        free(want);
        assert_int_equal(changed_logged, changes);
    }

    /* an enum the connection never looked up */
    free(tu_scalar(admin, "CREATE TYPE pgs_desc_e AS ENUM ('a', 'b')", 0, NULL));
    free(tu_scalar(admin, "ALTER TABLE pgs_desc_t ALTER COLUMN v TYPE pgs_desc_e USING 'b'", 0,
                   NULL));
    uint64_t id = open_on(p, sql, NULL);
    char *out = NULL, *err = NULL;
    int frc = pgspout_registry_fetch(id, 0, &out, NULL, NULL, &err);
    if (frc != PGSPOUT_ESTATE)
        fail_msg("enum run: %s, %s, %s", pgspout_code_name(frc), out ? out : "-", err ? err : "-");
    assert_null(out);
    assert_non_null(err);
    if (strstr(err, "run it again") == NULL)
        fail_msg("unexpected error: %s", err);
    pgspout_free(err);
    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    char *got = one_row(p, sql, NULL);
    char *want = server_ndjson(admin, sql);
    assert_string_equal(got, want);
    assert_non_null(strstr(got, "\"v\":\"b\""));
    free(got);
    free(want);
    assert_int_equal(pstats(p).created, 1);

    pgspout_set_log_hook(NULL, NULL);
    pgspout_pool_close(p);
    free(tu_scalar(admin, "DROP TABLE pgs_desc_t", 0, NULL));
    free(tu_scalar(admin, "DROP TYPE pgs_desc_e", 0, NULL));
    pgspout_conn_close(admin);
}

/* A stream holds its connection while it runs: with the pool exhausted the
 * next open waits acquire_timeout, then fails clearly. */
static void test_exhausted(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_full", "1", "100ms");
    pgspout_options *o = opts("chunk_rows", "100", NULL);
    uint64_t id = open_on(p, "SELECT generate_series(1, 100000000) AS g", o);
    uint64_t id2 = 0;
    char *err = NULL;
    assert_int_equal(pgspout_registry_open_pool(p, "SELECT 1", 0, NULL, NULL, &id2, &err),
                     PGSPOUT_ETIMEOUT);
    assert_int_equal(id2, 0);
    assert_non_null(err);
    assert_non_null(strstr(err, "acquire_timeout"));
    pgspout_free(err);
    assert_int_equal(pgspout_registry_close(id), PGSPOUT_OK);
    char *js = one_row(p, "SELECT 5", NULL);
    assert_int_equal(first_value(js), 5);
    free(js);
    assert_int_equal(pgspout_registry_open_pool(NULL, "SELECT 1", 0, NULL, NULL, &id2, NULL),
                     PGSPOUT_EINVAL);
    pgspout_options_free(o);
    pgspout_pool_close(p);
}

/* The background thread keeps the registry's pools: min_idle connections
 * are opened without anyone asking. */
static void test_reaper_maintains(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    pgspout_options *o = opts("application_name", "pgs_reg_minidle", "min_idle", "2", NULL);
    free(one_row(NULL, "SELECT 1", o));
    double until = tu_now() + tu_slack(10);
    while (backends(admin, "pgs_reg_minidle") < 2 && tu_now() < until)
        tu_sleep_ms(50);
    assert_int_equal(backends(admin, "pgs_reg_minidle"), 2);
    pgspout_options_free(o);
    pgspout_conn_close(admin);
}

/* pgspout_registry_pool: one pool per conninfo and keys, the one
 * pgspout_registry_open uses. */
static void test_registry_pool(void **state)
{
    (void)state;
    pgspout_options *o = opts("application_name", "pgs_reg_shared", "max_size", "3", NULL);
    pgspout_options *o2 = opts("application_name", "pgs_reg_shared", "max_size", "4", NULL);
    pgspout_pool *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(pgspout_registry_pool(tu_dsn(), o, &a), PGSPOUT_OK);
    assert_int_equal(pgspout_registry_pool(tu_dsn(), o, &b), PGSPOUT_OK);
    assert_int_equal(pgspout_registry_pool(tu_dsn(), o2, &c), PGSPOUT_OK);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_int_equal(pstats(a).max_size, 3);
    /* stream keys do not make another pool */
    pgspout_options *o3 =
        opts("application_name", "pgs_reg_shared", "max_size", "3", "chunk_rows", "7", NULL);
    assert_int_equal(pgspout_registry_pool(tu_dsn(), o3, &b), PGSPOUT_OK);
    assert_ptr_equal(a, b);
    uint64_t before = pstats(a).acquires;
    free(one_row(NULL, "SELECT 1", o3));
    assert_int_equal(pstats(a).acquires, before + 1);
    assert_int_equal(pgspout_registry_pool(NULL, o, &b), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_registry_pool(tu_dsn(), o, NULL), PGSPOUT_EINVAL);
    pgspout_options_free(o);
    pgspout_options_free(o2);
    pgspout_options_free(o3);
}

/* Closing a pooled connection gives it back; releasing it (the garbage
 * collector's path) gives it back when its stream ends. */
static void test_close_gives_back(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("pgs_reg_closeback", "1", "0");
    pgspout_conn *c = NULL;
    assert_int_equal(pgspout_pool_acquire(p, 0, &c), PGSPOUT_OK);
    tu_expect_scalar(c, "SELECT 1", "1");
    pgspout_conn_close(c);
    assert_int_equal(pstats(p).in_use, 0);
    assert_int_equal(pstats(p).idle, 1);

    assert_int_equal(pgspout_pool_acquire(p, 0, &c), PGSPOUT_OK);
    pgspout_stream *s = NULL;
    assert_int_equal(
        pgspout_stream_open(c, "SELECT g FROM generate_series(1, 10) g", 0, NULL, NULL, &s),
        PGSPOUT_OK);
    pgspout_conn_release(c); /* the stream still runs on it */
    assert_int_equal(pstats(p).in_use, 1);
    const pgspout_row *row;
    int rc, n = 0;
    while ((rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK)
        n++;
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(n, 10);
    assert_int_equal(pstats(p).in_use, 0); /* back at the stream's end */
    pgspout_stream_close(s);

    /* the same, closing the stream before its end */
    assert_int_equal(pgspout_pool_acquire(p, 0, &c), PGSPOUT_OK);
    assert_int_equal(
        pgspout_stream_open(c, "SELECT generate_series(1, 100000000) AS g", 0, NULL, NULL, &s),
        PGSPOUT_OK);
    pgspout_conn_release(c);
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_OK);
    pgspout_stream_close(s);
    assert_int_equal(pstats(p).in_use, 0);
    assert_int_equal(pgspout_pool_acquire(p, 0, &c), PGSPOUT_OK);
    tu_expect_scalar(c, "SELECT 2", "2");
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    assert_int_equal(pstats(p).created, 1);
    pgspout_pool_close(p);
}

/* A fork child while the registry's thread waits for its next tick: the
 * child's registry starts empty and works (its own thread, its own wait),
 * and the parent's goes on. The child once hung at fork (the wait's
 * condition variable destroyed with the parent's thread recorded on it). */
static void test_fork_while_the_reaper_waits(void **state)
{
    (void)state;
    free(one_row(NULL, "SELECT 1", NULL)); /* the thread runs from here */
    tu_sleep_ms(100);                      /* ... and waits for its tick */
    /* the verdict comes through a pipe: under valgrind the child's exit
     * status is its leak check's (the parent's threads' library state, such
     * as krb5's thread-specific data, stays behind in a fork child) */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(fds[0]);
        char *list = pgspout_registry_list_json();
        int ok = list && strcmp(list, "[]") == 0;
        pgspout_free(list);
        char *v = NULL;
        uint64_t id = 0;
        ok = ok && pgspout_registry_open(tu_dsn(), "SELECT 42 AS v", 0, NULL, NULL, &id, NULL) ==
                       PGSPOUT_OK;
        ok = ok && drain(id, &v) == PGSPOUT_DONE && v && strstr(v, "42") != NULL;
        free(v);
        ok = ok && pgspout_registry_close(id) == PGSPOUT_OK;
        char verdict = ok ? 'y' : 'n';
        _exit(write(fds[1], &verdict, 1) == 1 ? 0 : 1);
    }
    close(fds[1]);
    /* generous: a busy machine; a hang never ends */
    int status = 0;
    double until = tu_now() + tu_slack(30);
    pid_t w;
    while ((w = waitpid(child, &status, WNOHANG)) == 0 && tu_now() < until)
        tu_sleep_ms(20);
    if (w == 0) {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        fail_msg("the fork child hung in the registry");
    }
    char verdict = 0;
    assert_int_equal(read(fds[0], &verdict, 1), 1);
    close(fds[0]);
    assert_int_equal(verdict, 'y');
    if (!tu_valgrind()) {
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    char *js = one_row(NULL, "SELECT 7", NULL);
    assert_non_null(strstr(js, "7"));
    free(js);
}

int main(void)
{
    int gate = tu_db_gate("test_registry");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_reuses_backend),
        cmocka_unit_test(test_threads_bounded_backends),
        cmocka_unit_test(test_back_after_done_and_error),
        cmocka_unit_test(test_back_after_cancel),
        cmocka_unit_test(test_back_after_cancel_with_fetch),
        cmocka_unit_test(test_back_after_close_and_reap),
        cmocka_unit_test(test_no_state_leak),
        cmocka_unit_test(test_reset_follows_the_statement),
        cmocka_unit_test(test_described_again),
        cmocka_unit_test(test_exhausted),
        cmocka_unit_test(test_reaper_maintains),
        cmocka_unit_test(test_registry_pool),
        cmocka_unit_test(test_close_gives_back),
        cmocka_unit_test(test_fork_while_the_reaper_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
