/* test_pool.c - pgspout_pool against a real server: reuse without new
 * backends, what a previous user leaves behind never reaches the next one
 * (open or failed transactions, SET, LISTEN, temp tables, advisory locks,
 * prepared statements, a stream left open or cancelled), exhaustion and
 * waiters (timeout, release, close, interrupt hook), a backend killed while
 * idle, many threads on few connections, fork, and the metrics. Properties,
 * not timings. Needs PGSPOUT_TEST_DSN. */
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
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static pgspout_pool *new_pool(const char *key, ...)
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
    pgspout_pool *p = NULL;
    assert_int_equal(pgspout_pool_new(tu_dsn(), o, &p), PGSPOUT_OK);
    assert_non_null(p);
    pgspout_options_free(o);
    return p;
}

static pgspout_conn *acquire(pgspout_pool *p)
{
    pgspout_conn *c = NULL;
    int rc = pgspout_pool_acquire(p, 30000, &c);
    if (rc != PGSPOUT_OK)
        fail_msg("acquire: %s: %s", pgspout_code_name(rc), c ? pgspout_conn_error(c) : "");
    assert_int_equal(pgspout_conn_ok(c), 1);
    return c;
}

static long scalar_long(pgspout_conn *c, const char *sql)
{
    return tu_scalar_long(c, sql, 0, NULL);
}

static long backend_pid(pgspout_conn *c) { return scalar_long(c, "SELECT pg_backend_pid()"); }

static void expect(pgspout_conn *c, const char *sql, const char *want)
{
    char *v = tu_scalar(c, sql, 0, NULL);
    if (v == NULL || strcmp(v, want) != 0)
        fail_msg("%s gave \"%s\", want \"%s\"", sql, v ? v : "(no row)", want);
    free(v);
}

/* Run sql for its effect, ignoring rows and errors. */
static void run(pgspout_conn *c, const char *sql) { free(tu_try_scalar(c, sql, 0, NULL)); }

static pgspout_pool_stats stats(pgspout_pool *p)
{
    pgspout_pool_stats st = PGSPOUT_POOL_STATS_INIT;
    assert_int_equal(pgspout_pool_stats_get(p, &st), PGSPOUT_OK);
    return st;
}

/* Backends of this database with application_name app (admin connection). */
static long backends(pgspout_conn *admin, const char *app)
{
    const char *params[] = {app};
    return tu_scalar_long(admin,
                          "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                          "AND backend_type = 'client backend'",
                          1, params);
}

/* ------------------------------------------------------------------ tests */

static void test_options(void **state)
{
    (void)state;
    pgspout_options *o = pgspout_options_new();
    assert_int_equal(pgspout_options_set(o, "max_size", "0"), PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(o, "min_idle", "-1"), PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(o, "acquire_timeout", "soon"), PGSPOUT_EVALUE);
    assert_string_equal(pgspout_options_get(o, "max_size"), "10");
    assert_string_equal(pgspout_options_get(o, "acquire_timeout"), "30000ms");
    assert_string_equal(pgspout_options_get(o, "max_lifetime"), "1800000ms");
    assert_int_equal(pgspout_options_set(o, "max_size", "2"), PGSPOUT_OK);
    assert_int_equal(pgspout_options_set(o, "min_idle", "3"), PGSPOUT_OK);
    pgspout_pool *p = (pgspout_pool *)1;
    assert_int_equal(pgspout_pool_new(tu_dsn(), o, &p), PGSPOUT_EVALUE);
    assert_null(p);
    assert_int_equal(pgspout_pool_new(NULL, o, &p), PGSPOUT_EINVAL);
    pgspout_options_free(o);
    pgspout_conn *c = NULL;
    assert_int_equal(pgspout_pool_acquire(NULL, 0, &c), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_pool_release(NULL, NULL), PGSPOUT_EINVAL);
    pgspout_pool_close(NULL);
}

/* The same backend serves every acquire; no connection is opened in steady
 * state; maintain opens min_idle up front. */
static void test_reuse(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    pgspout_pool *p =
        new_pool("max_size", "3", "min_idle", "1", "application_name", "pgs_pool_reuse", NULL);
    assert_int_equal(stats(p).total, 0); /* new opens nothing */
    assert_int_equal(pgspout_pool_maintain(p), PGSPOUT_OK);
    pgspout_pool_stats st = stats(p);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.created, 1);

    pgspout_conn *c = acquire(p);
    long pid = backend_pid(c);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_EINVAL); /* not out any more */
    for (int i = 0; i < 100; i++) {
        c = acquire(p);
        assert_int_equal(backend_pid(c), pid);
        assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    }
    st = stats(p);
    assert_int_equal(st.created, 1);
    assert_int_equal(st.closed, 0);
    assert_int_equal(st.acquires, 101);
    assert_int_equal(st.idle, 1);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(backends(admin, "pgs_pool_reuse"), 1);

    /* a connection of another pool is refused, and left alone */
    pgspout_pool *q = new_pool("max_size", "1", NULL);
    c = acquire(p);
    assert_int_equal(pgspout_pool_release(q, c), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_conn_ok(c), 1);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    pgspout_pool_close(q);
    pgspout_pool_close(p);
    /* closing closed the idle backend (the server sees it go soon after) */
    for (int i = 0; i < 500 && backends(admin, "pgs_pool_reuse") != 0; i++)
        tu_sleep_ms(10);
    assert_int_equal(backends(admin, "pgs_pool_reuse"), 0);
    pgspout_conn_close(admin);
}

/* Whatever session state a user leaves, the next one (on the same backend:
 * max_size 1) starts clean. */
static void test_reset_session(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("max_size", "1", NULL);
    pgspout_conn *c = acquire(p);
    long pid = backend_pid(c);
    char *work_mem = tu_scalar(c, "SHOW work_mem", 0, NULL);
    run(c, "SET work_mem = '7777kB'");
    run(c, "SET application_name = 'dirty'");
    run(c, "LISTEN pgs_pool_chan");
    run(c, "CREATE TEMP TABLE pgs_pool_tmp (x int)");
    run(c, "SELECT pg_advisory_lock(4242)");
    run(c, "PREPARE pgs_pool_prep AS SELECT 1");
    run(c, "SET extra_float_digits = 0");
    expect(c, "SELECT count(*) FROM pg_listening_channels()", "1");
    run(c, "BEGIN");
    run(c, "SET LOCAL work_mem = '8888kB'");
    run(c, "SELECT txid_current()");
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);

    c = acquire(p);
    assert_int_equal(backend_pid(c), pid); /* reset, not replaced */
    expect(c, "SHOW work_mem", work_mem);
    expect(c, "SELECT current_setting('application_name')", "");
    expect(c, "SELECT count(*) FROM pg_listening_channels()", "0");
    expect(c, "SELECT to_regclass('pg_temp.pgs_pool_tmp') IS NULL", "t");
    expect(c,
           "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
           "pg_backend_pid()",
           "0");
    expect(c, "SELECT count(*) FROM pg_prepared_statements", "0");
    expect(c, "SHOW extra_float_digits", "3");
    /* not inside the transaction left open (it had an xid) */
    expect(c, "SELECT txid_current_if_assigned() IS NULL", "t");
    free(work_mem);

    /* a failed transaction is rolled back */
    run(c, "BEGIN");
    assert_null(tu_try_scalar(c, "SELECT 1/0", 0, NULL));
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    c = acquire(p);
    assert_int_equal(backend_pid(c), pid);
    expect(c, "SELECT 41 + 1", "42");

    /* statement_timeout set by a stream option is gone, and pgspout knows it:
     * the next stream asking for one gets it */
    pgspout_options *o = tu_opts("statement_timeout", "3s", NULL);
    pgspout_stream *s = NULL;
    assert_int_equal(
        pgspout_stream_open(c, "SELECT current_setting('statement_timeout')", 0, NULL, o, &s),
        PGSPOUT_OK);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(r, 0, NULL), "3s");
    pgspout_stream_close(s);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    c = acquire(p);
    expect(c, "SHOW statement_timeout", "0");
    assert_int_equal(
        pgspout_stream_open(c, "SELECT current_setting('statement_timeout')", 0, NULL, o, &s),
        PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(r, 0, NULL), "3s");
    pgspout_stream_close(s);
    pgspout_options_free(o);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    assert_int_equal(stats(p).created, 1);
    pgspout_pool_close(p);
}

/* A connection released with a stream still running, or after a cancel,
 * serves the next user a clean connection and the old query is gone. */
static void test_release_mid_stream(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    pgspout_pool *p = new_pool("max_size", "1", NULL);
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    const char *sql = "SELECT g, repeat('x', 100) FROM generate_series(1, 50000000) g /*pgsp1*/";
    for (int round = 0; round < 2; round++) {
        pgspout_conn *c = acquire(p);
        pgspout_stream *s = NULL;
        assert_int_equal(pgspout_stream_open(c, sql, 0, NULL, o, &s), PGSPOUT_OK);
        const pgspout_row *r;
        assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
        if (round == 1) /* cancelled, not closed, before the release */
            assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
        assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
        assert_int_not_equal(pgspout_stream_state(s), PGSPOUT_STATE_RUNNING);
        assert_true(pgspout_stream_next(s, &r) < 0); /* the stream is over */
        pgspout_stream_close(s);
        c = acquire(p);
        expect(c, "SELECT 6 * 7", "42");
        expect(c,
               "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%/*pgsp1*/%' "
               "AND state = 'active' AND pid <> pg_backend_pid()",
               "0");
        assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    }
    assert_int_equal(stats(p).created, 1); /* both were reset, not replaced */
    (void)admin;
    pgspout_options_free(o);
    pgspout_pool_close(p);
    pgspout_conn_close(admin);
}

/* Ends its statement only 2 s after the cancel (it catches it), so that a
 * release of its connection drains for that long; shows "pgsp_stopping" in
 * pg_stat_activity once cancelled. */
static const char stubborn_fn[] =
    "CREATE OR REPLACE FUNCTION pgsp_stubborn() RETURNS int LANGUAGE plpgsql AS $$ "
    "DECLARE stop timestamptz; "
    "BEGIN "
    "  BEGIN PERFORM pg_sleep(60); RETURN 0; "
    "  EXCEPTION WHEN query_canceled THEN NULL; END; "
    "  PERFORM set_config('application_name', 'pgsp_stopping', false); "
    "  stop := clock_timestamp() + interval '2 s'; "
    "  WHILE clock_timestamp() < stop LOOP "
    "    BEGIN PERFORM pg_sleep(0.05); EXCEPTION WHEN query_canceled THEN NULL; END; "
    "  END LOOP; "
    "  RETURN 1; "
    "END $$";

static void *release_thread(void *arg)
{
    void **a = arg;
    pgspout_pool_release(a[0], a[1]);
    return NULL;
}

/* A connection given back mid-statement while two drains already run (each
 * releasing a connection whose statement takes 2 s to stop) is not drained
 * but closed (reason "discarded"): its statement is cancelled and its
 * backend ends; the drained ones are reset and reused. */
static void test_release_mid_stream_drains_busy(void **state)
{
    (void)state;
    pgspout_conn *admin = tu_connect();
    run(admin, stubborn_fn);
    pgspout_pool *p = new_pool("max_size", "3", "label", "t_pool_disc", NULL);
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    const char *stubborn = "SELECT g FROM generate_series(1, 5000) g UNION ALL "
                           "SELECT pgsp_stubborn() /*pgsp2*/";
    const char *big =
        "SELECT g, repeat('x', 100) FROM (SELECT generate_series(1, 50000000) AS g) s "
        "/*pgsp3*/";
    pgspout_conn *c[3];
    pgspout_stream *s[3];
    const pgspout_row *r;
    for (int i = 0; i < 3; i++) {
        c[i] = acquire(p);
        s[i] = NULL;
        assert_int_equal(pgspout_stream_open(c[i], i < 2 ? stubborn : big, 0, NULL, o, &s[i]),
                         PGSPOUT_OK);
        assert_int_equal(pgspout_stream_next(s[i], &r), PGSPOUT_OK);
    }
    long pid3 = 0;
    {
        char *v = tu_scalar(admin,
                            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%/*pgsp3*/%' "
                            "AND state = 'active' AND pid <> pg_backend_pid()",
                            0, NULL);
        assert_non_null(v);
        pid3 = atol(v);
        free(v);
    }
    pthread_t t[2];
    void *args[2][2] = {{p, c[0]}, {p, c[1]}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, release_thread, args[i]), 0);
    /* both cancelled and draining */
    double t0 = tu_now();
    while (backends(admin, "pgsp_stopping") < 2) {
        if (tu_now() - t0 > tu_slack(30))
            fail_msg("the two releases did not cancel their statements");
        tu_sleep_ms(10);
    }
    assert_int_equal(pgspout_pool_release(p, c[2]), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_state(s[2]), PGSPOUT_STATE_CLOSED);
    assert_true(pgspout_stream_next(s[2], &r) < 0);
    char q[160];
    snprintf(q, sizeof q, "SELECT count(*) FROM pg_stat_activity WHERE pid = %ld", pid3);
    t0 = tu_now();
    for (;;) { /* its backend ends (the cancel, then the closed socket) */
        char *v = tu_scalar(admin, q, 0, NULL);
        int gone = v && strcmp(v, "0") == 0;
        free(v);
        if (gone)
            break;
        if (tu_now() - t0 > tu_slack(30))
            fail_msg("the discarded connection's backend %ld still runs", pid3);
        tu_sleep_ms(10);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pgspout_pool_stats st = stats(p);
    assert_int_equal(st.created, 3);
    assert_int_equal(st.closed, 1);
    assert_int_equal(st.idle, 2); /* the drained two, reset */
    for (int i = 0; i < 3; i++)
        pgspout_stream_close(s[i]);
    pgspout_conn *d = acquire(p);
    expect(d, "SELECT current_setting('application_name') <> 'pgsp_stopping'", "t");
    assert_int_equal(pgspout_pool_release(p, d), PGSPOUT_OK);
    char *text = pgspout_metrics_prometheus();
    tu_expo e;
    if (tu_expo_parse(text, &e) != 0)
        fail_msg("exposition: %s", e.err);
    double v = -1;
    tu_expo_sum(&e, "pgspout_pool_connections_closed_total",
                "label=\"t_pool_disc\",reason=\"discarded\"", &v);
    assert_true(v == 1);
    tu_expo_free(&e);
    pgspout_free(text);
    pgspout_options_free(o);
    pgspout_pool_close(p);
    run(admin, "DROP FUNCTION IF EXISTS pgsp_stubborn()");
    pgspout_conn_close(admin);
}

/* A failed pgspout_conn_cancel (it may still land later) closes the
 * connection at release. A broken connection is replaced. */
static void test_release_broken(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("max_size", "1", NULL);
    pgspout_conn *c = acquire(p);
    long pid = backend_pid(c);
    /* break it from the server side while it is out */
    pgspout_conn *admin = tu_connect();
    char q[128];
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%ld, 10000)", pid);
    expect(admin, q, "t");
    assert_null(tu_try_scalar(c, "SELECT 1", 0, NULL));
    assert_int_equal(pgspout_conn_ok(c), 0);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    c = acquire(p);
    assert_int_not_equal(backend_pid(c), pid);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    pgspout_pool_stats st = stats(p);
    assert_int_equal(st.created, 2);
    assert_int_equal(st.closed, 1);
    pgspout_pool_close(p);
    pgspout_conn_close(admin);
}

/* A backend terminated while its connection sits idle in the pool is found
 * at checkout and replaced: the caller never sees it. */
static void test_killed_while_idle(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgspout_pool *p = new_pool("max_size", "2", "label", "t_pool_kill", NULL);
    pgspout_conn *c = acquire(p);
    long pid = backend_pid(c);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    pgspout_conn *admin = tu_connect();
    char q[128];
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%ld, 10000)", pid);
    expect(admin, q, "t");
    c = acquire(p);
    assert_int_not_equal(backend_pid(c), pid);
    expect(c, "SELECT 'alive'", "alive");
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    char *text = pgspout_metrics_prometheus();
    tu_expo e;
    assert_int_equal(tu_expo_parse(text, &e), 0);
    double v = -1;
    assert_int_equal(tu_expo_sum(&e, "pgspout_pool_connections_closed_total",
                                 "label=\"t_pool_kill\",reason=\"broken\"", &v),
                     1);
    assert_true(v == 1);
    tu_expo_free(&e);
    pgspout_free(text);
    pgspout_pool_close(p);
    pgspout_conn_close(admin);
}

/* acquire_idle: an idle connection or AGAIN, never a connect or a wait; an
 * idle connection whose backend was killed is closed and not replaced. */
static void test_acquire_idle(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("max_size", "2", "acquire_timeout", "7s", NULL);
    pgspout_conn *c = NULL;
    assert_int_equal(pgspout_pool_acquire_idle(p, &c), PGSPOUT_AGAIN);
    assert_null(c);
    pgspout_pool_stats st = stats(p);
    assert_int_equal(st.total, 0);
    assert_int_equal(st.created, 0);
    assert_int_equal(st.acquires, 0);
    assert_int_equal(st.acquire_timeout_ms, 7000);

    c = acquire(p);
    long pid = backend_pid(c);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    c = NULL;
    assert_int_equal(pgspout_pool_acquire_idle(p, &c), PGSPOUT_OK);
    assert_int_equal(backend_pid(c), pid);
    pgspout_conn *none = NULL;
    assert_int_equal(pgspout_pool_acquire_idle(p, &none), PGSPOUT_AGAIN); /* one of two in use */
    assert_null(none);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);

    pgspout_conn *admin = tu_connect();
    char q[128];
    snprintf(q, sizeof q, "SELECT pg_terminate_backend(%ld, 10000)", pid);
    expect(admin, q, "t");
    c = NULL;
    assert_int_equal(pgspout_pool_acquire_idle(p, &c), PGSPOUT_AGAIN);
    assert_null(c);
    st = stats(p);
    assert_int_equal(st.total, 0);
    assert_int_equal(st.created, 1);
    assert_int_equal(st.closed, 1);
    assert_int_equal(st.acquires, 2);

    pgspout_pool_close(p);
    assert_int_equal(pgspout_pool_acquire_idle(NULL, &c), PGSPOUT_EINVAL);
    pgspout_conn_close(admin);
}

/* The same, without waiting for the backend's process to exit: once it is
 * gone from pg_stat_activity it has sent its FATAL, but its socket closes
 * only at the end of its exit, which can come after the checkout. The FATAL
 * alone must make the checkout discard the connection (found at checkout,
 * before this, in about half of the rounds only: the other half handed the
 * dying connection out and its query failed). */
static void test_killed_while_idle_exiting(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    pgspout_pool *p = new_pool("max_size", "1", "label", "t_pool_exiting", NULL);
    pgspout_conn *admin = tu_connect();
    const int rounds = tu_valgrind() ? 5 : 20;
    for (int i = 0; i < rounds; i++) {
        pgspout_conn *c = acquire(p);
        long pid = backend_pid(c);
        assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
        char q[160];
        snprintf(q, sizeof q, "SELECT pg_terminate_backend(%ld)", pid);
        expect(admin, q, "t");
        snprintf(q, sizeof q, "SELECT count(*) FROM pg_stat_activity WHERE pid = %ld", pid);
        while (scalar_long(admin, q) != 0) {
        }
        c = acquire(p);
        char *v = tu_try_scalar(c, "SELECT 'alive'", 0, NULL);
        if (v == NULL || strcmp(v, "alive") != 0)
            fail_msg("round %d: the connection to the killed backend %ld was handed out: %s", i,
                     pid, pgspout_conn_error(c));
        free(v);
        assert_int_not_equal(backend_pid(c), pid);
        assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    }
    pgspout_pool_stats st = stats(p);
    assert_int_equal(st.closed, rounds);
    assert_int_equal(st.created, rounds + 1);
    pgspout_pool_close(p);
    pgspout_conn_close(admin);
}

typedef struct waiter_arg {
    pgspout_pool *p;
    int64_t timeout_ms;
    int use_hook;
    atomic_int stop; /* the interrupt hook's answer */
    int rc;
    long pid;
    pgspout_conn *c;
} waiter_arg;

static int hook(void *ud) { return atomic_load(&((waiter_arg *)ud)->stop); }

static void *waiter_thread(void *arg)
{
    waiter_arg *a = arg;
    if (a->use_hook)
        pgspout_set_interrupt_hook(hook, a);
    a->rc = pgspout_pool_acquire(a->p, a->timeout_ms, &a->c);
    if (a->rc == PGSPOUT_OK) {
        char *v = tu_try_scalar(a->c, "SELECT pg_backend_pid()", 0, NULL);
        a->pid = v ? atol(v) : -1;
        free(v);
        pgspout_pool_release(a->p, a->c);
    }
    pgspout_set_interrupt_hook(NULL, NULL);
    return NULL;
}

static void wait_for_waiters(pgspout_pool *p, int n)
{
    for (int i = 0; i < 3000 && stats(p).waiting != n; i++)
        tu_sleep_ms(10);
    assert_int_equal(stats(p).waiting, n);
}

/* max_size in use: acquire times out (never early), a waiter is woken by a
 * release and gets that very connection, by pool close (ESTATE) and by its
 * interrupt hook (EINTR). */
static void test_exhaustion(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("max_size", "2", "acquire_timeout", "150ms", NULL);
    pgspout_conn *a = acquire(p), *b = acquire(p), *c = NULL;
    assert_int_equal(pgspout_pool_acquire(p, 0, &c), PGSPOUT_ETIMEOUT);
    assert_null(c);
    double t0 = tu_now();
    assert_int_equal(pgspout_pool_acquire(p, -1, &c), PGSPOUT_ETIMEOUT); /* acquire_timeout */
    assert_true(tu_now() - t0 >= 0.149);
    t0 = tu_now();
    assert_int_equal(pgspout_pool_acquire(p, 100, &c), PGSPOUT_ETIMEOUT);
    assert_true(tu_now() - t0 >= 0.099);
    assert_int_equal(stats(p).timeouts, 3);
    assert_int_equal(stats(p).total, 2);

    /* woken by a release: gets the released backend */
    long pid_a = backend_pid(a);
    waiter_arg w = {.p = p, .timeout_ms = 60000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_thread, &w), 0);
    wait_for_waiters(p, 1);
    assert_int_equal(pgspout_pool_release(p, a), PGSPOUT_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, PGSPOUT_OK);
    assert_int_equal(w.pid, pid_a);

    /* woken by its interrupt hook */
    a = acquire(p);
    waiter_arg h = {.p = p, .timeout_ms = 60000, .use_hook = 1};
    assert_int_equal(pthread_create(&t, NULL, waiter_thread, &h), 0);
    wait_for_waiters(p, 1);
    atomic_store(&h.stop, 1);
    pthread_join(t, NULL);
    assert_int_equal(h.rc, PGSPOUT_EINTR);
    assert_null(h.c);
    assert_int_equal(stats(p).waiting, 0);

    /* woken by close; the connections out are released after it */
    waiter_arg x = {.p = p, .timeout_ms = 0 /* set below: without limit */};
    x.timeout_ms = 600000;
    assert_int_equal(pthread_create(&t, NULL, waiter_thread, &x), 0);
    wait_for_waiters(p, 1);
    pgspout_pool_close(p);
    pthread_join(t, NULL);
    assert_int_equal(x.rc, PGSPOUT_ESTATE);
    assert_int_equal(pgspout_pool_release(p, a), PGSPOUT_OK);
    assert_int_equal(pgspout_pool_release(p, b), PGSPOUT_OK); /* the last: frees the pool */
}

/* Many threads on few connections: no error, never more than max_size out,
 * never more than max_size opened. */
#define NTHREADS 8
static atomic_int in_use, max_in_use, errors;

static void *worker(void *arg)
{
    pgspout_pool *p = arg;
    long n = tu_scaled(200, 20);
    for (long i = 0; i < n; i++) {
        pgspout_conn *c = NULL;
        int rc = pgspout_pool_acquire(p, 60000, &c);
        if (rc != PGSPOUT_OK) {
            atomic_fetch_add(&errors, 1);
            if (c)
                pgspout_pool_release(p, c);
            continue;
        }
        int now = atomic_fetch_add(&in_use, 1) + 1;
        int m = atomic_load(&max_in_use);
        while (now > m && !atomic_compare_exchange_weak(&max_in_use, &m, now))
            ;
        pgspout_stream *s = NULL;
        const char *sql =
            (i % 3) ? "SELECT g FROM generate_series(1, 50) g" : "SET work_mem = '5MB'";
        rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
        const pgspout_row *r;
        int rows = 0;
        while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
            rows++;
        if (rc != PGSPOUT_DONE || rows != ((i % 3) ? 50 : 0))
            atomic_fetch_add(&errors, 1);
        pgspout_stream_close(s);
        atomic_fetch_sub(&in_use, 1);
        if (pgspout_pool_release(p, c) != PGSPOUT_OK)
            atomic_fetch_add(&errors, 1);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("max_size", "4", NULL);
    atomic_store(&in_use, 0);
    atomic_store(&max_in_use, 0);
    atomic_store(&errors, 0);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, p), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    assert_true(atomic_load(&max_in_use) <= 4);
    pgspout_pool_stats st = stats(p);
    assert_true(st.created <= 4);
    assert_int_equal(st.closed, 0);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.acquires, NTHREADS * tu_scaled(200, 20));
    pgspout_conn *c = acquire(p); /* the SETs did not survive */
    expect(c, "SELECT current_setting('work_mem') <> '5MB'", "t");
    pgspout_pool_release(p, c);
    pgspout_pool_close(p);
}

/* A fork child gets connections of its own; the parent's keep working. */
static void test_fork(void **state)
{
    (void)state;
    pgspout_pool *p = new_pool("max_size", "2", NULL);
    pgspout_conn *c = acquire(p);
    pgspout_conn *held = acquire(p); /* out across the fork */
    long idle_pid = backend_pid(c);
    long held_pid = backend_pid(held);
    assert_int_equal(pgspout_pool_release(p, c), PGSPOUT_OK);
    assert_int_not_equal(idle_pid, held_pid);

    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int status = 0;
        pgspout_conn *k = NULL;
        if (pgspout_pool_acquire(p, 30000, &k) != PGSPOUT_OK)
            _exit(10);
        char *v = tu_try_scalar(k, "SELECT pg_backend_pid()", 0, NULL);
        long pid = v ? atol(v) : -1;
        free(v);
        if (pid <= 0)
            status = 11;
        else if (pid == idle_pid || pid == held_pid)
            status = 12; /* the parent's backend */
        pgspout_pool_stats st = PGSPOUT_POOL_STATS_INIT;
        pgspout_pool_stats_get(p, &st);
        if (st.in_use != 1 || st.idle != 0)
            status = 13;
        if (pgspout_pool_release(p, k) != PGSPOUT_OK)
            status = 14;
        /* the parent's connection, inherited: let go without a word */
        if (pgspout_pool_release(p, held) != PGSPOUT_OK)
            status = 15;
        pgspout_pool_close(p);
        _exit(status);
    }
    int status = -1;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* both parent connections still work: the child touched neither socket */
    assert_int_equal(backend_pid(held), held_pid);
    assert_int_equal(pgspout_pool_release(p, held), PGSPOUT_OK);
    for (int i = 0; i < 2; i++) {
        pgspout_conn *a = acquire(p), *b = acquire(p);
        long pa = backend_pid(a), pb = backend_pid(b);
        assert_true((pa == idle_pid && pb == held_pid) || (pa == held_pid && pb == idle_pid));
        pgspout_pool_release(p, a);
        pgspout_pool_release(p, b);
    }
    assert_int_equal(stats(p).created, 2);
    assert_int_equal(stats(p).closed, 0);
    pgspout_pool_close(p);
}

/* The pool series after a known workload, in a valid exposition. */
static void test_metrics(void **state)
{
    (void)state;
    pgspout_metrics_reset();
    const char *L = "label=\"t_pool_m\"";
    pgspout_pool *p = new_pool("max_size", "2", "label", "t_pool_m", NULL);
    pgspout_conn *a = acquire(p), *b = acquire(p), *c = NULL;
    assert_int_equal(pgspout_pool_acquire(p, 0, &c), PGSPOUT_ETIMEOUT);
    assert_int_equal(pgspout_pool_release(p, a), PGSPOUT_OK);
    a = acquire(p); /* reused */
    assert_int_equal(pgspout_pool_release(p, a), PGSPOUT_OK);

    char *text = pgspout_metrics_prometheus();
    tu_expo e;
    if (tu_expo_parse(text, &e) != 0)
        fail_msg("exposition: %s", e.err);
    static const struct {
        const char *name, *type;
        double want;
    } want[] = {
        {"pgspout_pool_acquires_total", "counter", 3},
        {"pgspout_pool_acquire_waits_total", "counter", 0},
        {"pgspout_pool_acquire_timeouts_total", "counter", 1},
        {"pgspout_pool_connections_created_total", "counter", 2},
        {"pgspout_pool_resets_total", "counter", 2},
        {"pgspout_pool_connections", "gauge", 2},
        {"pgspout_pool_idle_connections", "gauge", 1},
        {"pgspout_pool_in_use_connections", "gauge", 1},
        {"pgspout_pool_waiting", "gauge", 0},
        {"pgspout_pool_max_connections", "gauge", 2},
        {"pgspout_pool_acquire_seconds_count", NULL, 4},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        double v = -1;
        if (tu_expo_sum(&e, want[i].name, L, &v) != 1 || v != want[i].want)
            fail_msg("%s{%s} = %g, want %g", want[i].name, L, v, want[i].want);
        if (want[i].type) {
            const tu_family *f = tu_expo_family(&e, want[i].name);
            assert_non_null(f);
            assert_string_equal(f->type, want[i].type);
        }
    }
    assert_int_equal(tu_expo_sum(&e, "pgspout_pool_connections_closed_total", L, &(double){0}),
                     8); /* one series per reason */
    tu_expo_free(&e);
    pgspout_free(text);
    char *js = pgspout_metrics_json();
    assert_true(tu_json_valid(js, strlen(js)));
    assert_non_null(strstr(js, "\"t_pool_m\":{\"pool_acquires_total\":3,"));
    pgspout_free(js);

    pgspout_pool_release(p, b);
    pgspout_pool_close(p);
    text = pgspout_metrics_prometheus();
    assert_int_equal(tu_expo_parse(text, &e), 0);
    double v = -1;
    tu_expo_sum(&e, "pgspout_pool_connections_closed_total",
                "label=\"t_pool_m\",reason=\"pool_closed\"", &v);
    assert_true(v == 2);
    const char *zero[] = {"pgspout_pool_connections", "pgspout_pool_idle_connections",
                          "pgspout_pool_in_use_connections", "pgspout_pool_max_connections"};
    for (size_t i = 0; i < 4; i++) {
        v = -1;
        tu_expo_sum(&e, zero[i], L, &v);
        if (v != 0)
            fail_msg("%s after close = %g", zero[i], v);
    }
    tu_expo_free(&e);
    pgspout_free(text);
}

int main(void)
{
    int gate = tu_db_gate("test_pool");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_reset_session),
        cmocka_unit_test(test_release_mid_stream),
        cmocka_unit_test(test_release_mid_stream_drains_busy),
        cmocka_unit_test(test_release_broken),
        cmocka_unit_test(test_killed_while_idle),
        cmocka_unit_test(test_killed_while_idle_exiting),
        cmocka_unit_test(test_acquire_idle),
        cmocka_unit_test(test_exhaustion),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fork),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
