/* test_session.c - what a stream does to the session it runs on: the
 * caller's transactions and savepoints, statement_timeout across rollbacks,
 * command tags, float precision, LISTEN notifications, a lost connection's
 * message, and the interrupt hook. Needs PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* Every log line pgspout emits while a test runs; level 3 lines would be
 * statements pgspout added that the server refused. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];
static int log_errors;

static void log_hook(int level, const char *msg, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%d %s\n", level, msg);
    if (level >= 3)
        log_errors++;
    pthread_mutex_unlock(&log_mu);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_mu);
    log_text[0] = '\0';
    log_errors = 0;
    pthread_mutex_unlock(&log_mu);
}

static int log_count(const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&log_mu);
    for (const char *p = log_text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    pthread_mutex_unlock(&log_mu);
    return n;
}

/* Run sql to the end; returns the final code and copies the command tag. */
static int run(pgspout_conn *c, const char *sql, char *tag, size_t tagn)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    const pgspout_row *r;
    while (rc == PGSPOUT_OK)
        rc = pgspout_stream_next(s, &r);
    if (tag)
        snprintf(tag, tagn, "%s", pgspout_stream_command_tag(s));
    pgspout_stream_close(s);
    return rc;
}

static void run_ok(pgspout_conn *c, const char *sql, const char *want_tag)
{
    char tag[64];
    int rc = run(c, sql, tag, sizeof tag);
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s (%s)", sql, pgspout_code_name(rc), pgspout_conn_error(c));
    if (want_tag && strcmp(tag, want_tag) != 0)
        fail_msg("%s: command tag \"%s\", want \"%s\"", sql, tag, want_tag);
}

static int setup(void **state)
{
    (void)state;
    log_clear();
    pgspout_set_log_hook(log_hook, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pgspout_set_log_hook(NULL, NULL);
    if (log_errors)
        fail_msg("pgspout logged errors (statements it added that the server refused?):\n%s",
                 log_text);
    return 0;
}

/* The user's savepoints survive the streams that created and use them, and
 * every statement behaves as through libpq (issue 10, item 1). */
static void test_user_savepoints(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    run_ok(c, "CREATE TEMP TABLE sp (x int)", "CREATE TABLE");
    run_ok(c, "BEGIN", "BEGIN");
    run_ok(c, "INSERT INTO sp VALUES (1)", "INSERT 0 1");
    run_ok(c, "SAVEPOINT a", "SAVEPOINT");
    run_ok(c, "INSERT INTO sp VALUES (2)", "INSERT 0 1");
    run_ok(c, "/* a comment */ rollback -- and another\n TO SAVEPOINT a", "ROLLBACK");
    run_ok(c, "INSERT INTO sp VALUES (3)", "INSERT 0 1");
    run_ok(c, "SAVEPOINT b", "SAVEPOINT");
    run_ok(c, "INSERT INTO sp VALUES (4)", "INSERT 0 1");
    run_ok(c, "RELEASE SAVEPOINT b", "RELEASE");
    run_ok(c, "  release savepoint a", "RELEASE");
    run_ok(c, "COMMIT", "COMMIT");
    tu_expect_scalar(c, "SELECT string_agg(x::text, ',' ORDER BY x) FROM sp", "1,3,4");
    /* SET TRANSACTION must be the transaction's first statement, and not in
     * a subtransaction */
    run_ok(c, "BEGIN", "BEGIN");
    run_ok(c, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "SET");
    tu_expect_scalar(c, "SHOW transaction_isolation", "repeatable read");
    run_ok(c, "END", "COMMIT");
    /* ROLLBACK TO a savepoint made before a stream that was cancelled */
    run_ok(c, "BEGIN", "BEGIN");
    run_ok(c, "INSERT INTO sp VALUES (5)", "INSERT 0 1");
    run_ok(c, "SAVEPOINT c", "SAVEPOINT");
    pgspout_stream *s;
    assert_int_equal(
        pgspout_stream_open(c, "SELECT generate_series(1, 1000000)", 0, NULL, NULL, &s),
        PGSPOUT_OK);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ECANCELLED);
    pgspout_stream_close(s);
    run_ok(c, "INSERT INTO sp VALUES (6)", "INSERT 0 1");
    run_ok(c, "ROLLBACK TO SAVEPOINT c", "ROLLBACK");
    run_ok(c, "COMMIT", "COMMIT");
    tu_expect_scalar(c, "SELECT string_agg(x::text, ',' ORDER BY x) FROM sp", "1,3,4,5");
    pgspout_conn_close(c);
}

/* A COMMIT of a failed transaction completes with the tag ROLLBACK: visible,
 * and logged as a warning. */
static void test_commit_becomes_rollback(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    run_ok(c, "CREATE TEMP TABLE cr (x int)", NULL);
    run_ok(c, "BEGIN", "BEGIN");
    run_ok(c, "INSERT INTO cr VALUES (1)", "INSERT 0 1");
    assert_int_equal(run(c, "SELECT 1 / 0", NULL, 0), PGSPOUT_ESQL);
    run_ok(c, "COMMIT", "ROLLBACK");
    assert_int_equal(log_count("COMMIT ended in ROLLBACK"), 1);
    tu_expect_scalar(c, "SELECT count(*) FROM cr", "0");
    pgspout_conn_close(c);
}

static int sleep_with_timeout(pgspout_conn *c, const char *timeout, const char *sql, char *sqlstate)
{
    pgspout_options *o = timeout ? tu_opts("statement_timeout", timeout, NULL) : NULL;
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    const pgspout_row *r;
    while (rc == PGSPOUT_OK)
        rc = pgspout_stream_next(s, &r);
    snprintf(sqlstate, 6, "%s", pgspout_stream_sqlstate(s));
    pgspout_stream_close(s);
    pgspout_options_free(o);
    return rc;
}

/* statement_timeout across rolled-back transactions (issue 10, item 2). The
 * sleeps are 4x the timeout, so a timeout that applies fires long before the
 * sleep ends, however loaded the machine; one that does not apply lets a
 * short sleep finish. */
static void test_statement_timeout_and_rollback(void **state)
{
    (void)state;
    char st[6];
    pgspout_conn *c = tu_connect();
    /* SET inside a transaction that rolls back: set again next time */
    run_ok(c, "BEGIN", NULL);
    assert_int_equal(sleep_with_timeout(c, "200ms", "SELECT 1", st), PGSPOUT_DONE);
    run_ok(c, "ROLLBACK", "ROLLBACK");
    assert_int_equal(sleep_with_timeout(c, "200ms", "SELECT pg_sleep(0.8)", st), PGSPOUT_ESQL);
    assert_string_equal(st, "57014");
    /* the reverse: a RESET rolled back must not leave 200ms in force */
    run_ok(c, "BEGIN", NULL);
    assert_int_equal(sleep_with_timeout(c, NULL, "SELECT 1", st), PGSPOUT_DONE);
    run_ok(c, "ROLLBACK", "ROLLBACK");
    assert_int_equal(sleep_with_timeout(c, NULL, "SELECT pg_sleep(0.3)", st), PGSPOUT_DONE);
    tu_expect_scalar(c, "SHOW statement_timeout", "0");
    /* ROLLBACK TO SAVEPOINT undoes a SET made after the savepoint */
    run_ok(c, "BEGIN", NULL);
    run_ok(c, "SAVEPOINT s1", NULL);
    assert_int_equal(sleep_with_timeout(c, "5s", "SELECT 1", st), PGSPOUT_DONE);
    run_ok(c, "ROLLBACK TO SAVEPOINT s1", "ROLLBACK");
    tu_expect_scalar(c, "SHOW statement_timeout", "0");
    assert_int_equal(sleep_with_timeout(c, "5s", "SHOW statement_timeout", st), PGSPOUT_DONE);
    char *v = tu_try_scalar(c, "SELECT 1", 0, NULL);
    free(v);
    run_ok(c, "COMMIT", "COMMIT");
    /* after an error inside a transaction that used the option, ROLLBACK
     * (with or without the option) still ends the transaction */
    run_ok(c, "BEGIN", NULL);
    assert_int_equal(sleep_with_timeout(c, "300ms", "SELECT 1", st), PGSPOUT_DONE);
    assert_int_equal(sleep_with_timeout(c, "300ms", "SELECT 1 / 0", st), PGSPOUT_ESQL);
    assert_string_equal(st, "22012");
    assert_int_equal(sleep_with_timeout(c, NULL, "ROLLBACK", st), PGSPOUT_DONE);
    tu_expect_scalar(c, "SHOW statement_timeout", "0");
    run_ok(c, "BEGIN", NULL);
    assert_int_equal(sleep_with_timeout(c, NULL, "SELECT 1 / 0", st), PGSPOUT_ESQL);
    assert_int_equal(sleep_with_timeout(c, "300ms", "ROLLBACK", st), PGSPOUT_DONE);
    assert_true(pgspout_conn_ok(c));
    /* a SET committed with its transaction stays known */
    run_ok(c, "BEGIN", NULL);
    assert_int_equal(sleep_with_timeout(c, "250ms", "SELECT 1", st), PGSPOUT_DONE);
    run_ok(c, "COMMIT", "COMMIT");
    assert_int_equal(sleep_with_timeout(c, "250ms", "SELECT pg_sleep(1)", st), PGSPOUT_ESQL);
    assert_string_equal(st, "57014");
    pgspout_conn_close(c);
}

/* Floats arrive exact whatever the session's default (issue 10, item 4). */
static void test_float_precision(void **state)
{
    (void)state;
    char *dsn = tu_dsn_with("options='-c extra_float_digits=0'");
    pgspout_conn *c;
    assert_int_equal(pgspout_connect(dsn, &c), PGSPOUT_OK);
    tu_expect_scalar(c, "SELECT 0.1::float8 + 0.2::float8", "0.30000000000000004");
    tu_expect_scalar(c, "SELECT 1::float4 / 3::float4", "0.33333334");
    tu_expect_scalar(c, "SELECT 2.0::float8 / 3", "0.6666666666666666");
    pgspout_conn_close(c);
    free(dsn);
}

/* Notifications for a LISTEN through pgspout are consumed and dropped, with
 * one log line per connection (issue 10, item 9). */
static void test_listen_notifications_dropped(void **state)
{
    (void)state;
    pgspout_conn *l = tu_connect(), *n = tu_connect();
    run_ok(l, "LISTEN pgspout_test_channel", "LISTEN");
    const int count = (int)tu_scaled(2000, 200);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_notify('pgspout_test_channel', g::text || repeat('x', 1000)) "
             "FROM generate_series(1, %d) g",
             count);
    run_ok(n, sql, NULL);
    /* they reach the listener's socket while it is idle; its next streams
     * read past them */
    for (int i = 0; i < 5; i++)
        tu_expect_scalar(l, "SELECT 1", "1");
    assert_int_equal(log_count("dropped: pgspout does not deliver LISTEN/NOTIFY"), 1);
    pgspout_conn_close(l);
    pgspout_conn_close(n);
}

/* After the server ends the connection, conn_ok is 0 and conn_error says
 * why (issue 10, item 16). */
static void test_lost_connection_says_why(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect(), *k = tu_connect();
    char *pid = tu_scalar(c, "SELECT pg_backend_pid()", 0, NULL);
    const char *params[] = {pid};
    char *ok = tu_scalar(k, "SELECT pg_terminate_backend($1::int)", 1, params);
    assert_string_equal(ok, "t");
    char tag[64];
    int rc = run(c, "SELECT 1", tag, sizeof tag);
    assert_true(rc == PGSPOUT_ECONN || rc == PGSPOUT_ESQL);
    assert_int_equal(pgspout_conn_ok(c), 0);
    if (strlen(pgspout_conn_error(c)) == 0)
        fail_msg("conn_ok is 0 but conn_error is empty");
    free(pid);
    free(ok);
    pgspout_conn_close(c);
    pgspout_conn_close(k);
    log_clear(); /* the lost connection was logged as it should be */
}

/* ------------------------------------------------------ interrupt hook */

static atomic_int interrupt_now;
static atomic_int hook_calls;
static int hook(void *ud)
{
    (void)ud;
    atomic_fetch_add(&hook_calls, 1);
    return atomic_load(&interrupt_now);
}
static void on_sigusr1(int sig) { (void)sig; }

typedef struct interrupter {
    pthread_t victim;
    const char *pattern; /* wait for a query like this to be active, or NULL */
    double after;        /* ... else wait this long */
} interrupter;

/* Wait until the victim is blocked where it should be, then interrupt it
 * the way a signal handler would: set the flag, send a signal. */
static void *interrupter_main(void *arg)
{
    interrupter *in = arg;
    if (in->pattern) {
        pgspout_conn *c;
        if (pgspout_connect(tu_dsn(), &c) == PGSPOUT_OK) {
            const char *params[] = {in->pattern};
            for (int i = 0; i < 3000; i++) {
                char *n = tu_try_scalar(c,
                                        "SELECT count(*) FROM pg_stat_activity WHERE state = "
                                        "'active' AND query LIKE $1",
                                        1, params);
                int active = n && strcmp(n, "0") != 0;
                free(n);
                if (active)
                    break;
                tu_sleep_ms(10);
            }
        }
        pgspout_conn_close(c);
    } else {
        tu_sleep_ms((int)(in->after * 1000));
    }
    atomic_store(&interrupt_now, 1);
    pthread_kill(in->victim, SIGUSR1);
    return NULL;
}

static void start_interrupter(interrupter *in, pthread_t *th)
{
    atomic_store(&interrupt_now, 0);
    in->victim = pthread_self();
    pthread_create(th, NULL, interrupter_main, in);
}

static void expect_no_query(pgspout_conn *k, const char *pattern)
{
    const char *params[] = {pattern};
    /* the cancel has been taken when the call returned; the backend may
     * still be finishing it: poll, generously */
    for (int i = 0; i < 500; i++) {
        char *n = tu_scalar(k,
                            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                            "query LIKE $1",
                            1, params);
        int gone = strcmp(n, "0") == 0;
        free(n);
        if (gone)
            return;
        tu_sleep_ms(20);
    }
    fail_msg("the query %s is still running after the interrupt", pattern);
}

static void test_interrupt_open_and_next(void **state)
{
    (void)state;
    struct sigaction sa = {.sa_handler = on_sigusr1};
    sigaction(SIGUSR1, &sa, NULL);
    pgspout_conn *c = tu_connect(), *k = tu_connect();
    pgspout_set_interrupt_hook(hook, NULL);

    /* open waiting for the first row */
    interrupter in = {.pattern = "SELECT pg_sleep(60) /* open */%"};
    pthread_t th;
    start_interrupter(&in, &th);
    pgspout_stream *s = NULL;
    double t0 = tu_now();
    int rc = pgspout_stream_open(c, "SELECT pg_sleep(60) /* open */", 0, NULL, NULL, &s);
    double took = tu_now() - t0;
    pthread_join(th, NULL);
    assert_int_equal(rc, PGSPOUT_EINTR);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
    assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_EINTR);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_EINTR);
    pgspout_stream_close(s);
    /* well before the 60 s sleep: the bound is generous for a loaded box */
    assert_true(took < tu_slack(30));
    expect_no_query(k, "SELECT pg_sleep(60) /* open */%");

    /* next blocked on a paused stream */
    interrupter in2 = {.after = 0.3};
    atomic_store(&interrupt_now, 0);
    pgspout_options *o = tu_opts("chunk_rows", "10", NULL);
    assert_int_equal(pgspout_stream_open(c, "SELECT generate_series(1, 10000000)", 0, NULL, o, &s),
                     PGSPOUT_OK);
    pgspout_options_free(o);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    const pgspout_chunk *ch;
    while (pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch) == PGSPOUT_OK)
        ; /* the buffered rows stay readable; then it reports PAUSED */
    start_interrupter(&in2, &th);
    rc = pgspout_stream_next(s, &r);
    pthread_join(th, NULL);
    assert_int_equal(rc, PGSPOUT_EINTR);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
    pgspout_stream_close(s);

    /* the hook never fires without reason: a normal stream completes */
    atomic_store(&interrupt_now, 0);
    tu_expect_scalar(c, "SELECT 42", "42");
    pgspout_set_interrupt_hook(NULL, NULL);
    tu_expect_scalar(c, "SELECT 1", "1");
    assert_true(pgspout_conn_ok(c));
    pgspout_conn_close(c);
    pgspout_conn_close(k);
}

/* A listener that accepts and never answers: connect blocks in libpq. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_interrupt_connect(void **state)
{
    (void)state;
    struct sigaction sa = {.sa_handler = on_sigusr1};
    sigaction(SIGUSR1, &sa, NULL);
    int port = 0, fd = silent_listener(&port);
    assert_true(fd >= 0);
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=x dbname=x connect_timeout=60", port);
    pgspout_set_interrupt_hook(hook, NULL);
    interrupter in = {.after = 0.3};
    pthread_t th;
    start_interrupter(&in, &th);
    pgspout_conn *c = NULL;
    double t0 = tu_now();
    int rc = pgspout_connect(dsn, &c);
    double took = tu_now() - t0;
    pthread_join(th, NULL);
    pgspout_set_interrupt_hook(NULL, NULL);
    assert_int_equal(rc, PGSPOUT_EINTR);
    assert_non_null(c);
    assert_int_equal(pgspout_conn_ok(c), 0);
    assert_non_null(strstr(pgspout_conn_error(c), "interrupted"));
    pgspout_conn_close(c);
    assert_true(took < tu_slack(30)); /* not the 60 s connect_timeout */
    close(fd);
}

/* The record hook: server messages at their levels, with the stream's
 * label, severity and SQLSTATE; the plain hook gets the same messages with
 * the "stream <label>: " prefix and DEBUG as 1. */
static char rec_text[4096];
static void rec_hook(const pgspout_log_record *r, void *ud)
{
    (void)ud;
    assert_true(r->size >= sizeof *r);
    if (!strstr(r->message, "pgs-"))
        return;
    size_t n = strlen(rec_text);
    snprintf(rec_text + n, sizeof rec_text - n, "%d|%s|%s|%s|%s\n", r->level, r->message,
             r->label ? r->label : "-", r->severity ? r->severity : "-",
             r->sqlstate ? r->sqlstate : "-");
}

static void test_log_records(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    rec_text[0] = '\0';
    pgspout_set_log_record_hook(rec_hook, NULL);
    pgspout_options *o = pgspout_options_new();
    assert_int_equal(pgspout_options_set(o, "label", "etl"), PGSPOUT_OK);
    pgspout_stream *s = NULL;
    const pgspout_row *row;
    const char *sql = "DO $$ BEGIN PERFORM set_config('client_min_messages', 'debug1', true); "
                      "RAISE DEBUG 'pgs-d'; RAISE NOTICE 'pgs-n'; RAISE WARNING 'pgs-w'; END $$";
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    while (rc == PGSPOUT_OK)
        rc = pgspout_stream_next(s, &row);
    assert_int_equal(rc, PGSPOUT_DONE);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_set_log_record_hook(NULL, NULL);
    assert_string_equal(rec_text, "0|server DEBUG: pgs-d|etl|DEBUG|00000\n"
                                  "1|server NOTICE: pgs-n|etl|NOTICE|00000\n"
                                  "2|server WARNING: pgs-w|etl|WARNING|01000\n");
    assert_int_equal(log_count("1 stream etl: server DEBUG: pgs-d\n"), 1);
    assert_int_equal(log_count("1 stream etl: server NOTICE: pgs-n\n"), 1);
    assert_int_equal(log_count("2 stream etl: server WARNING: pgs-w\n"), 1);
    pgspout_conn_close(c);
}

int main(void)
{
    int gate = tu_db_gate("test_session");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_savepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_becomes_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_timeout_and_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_precision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_notifications_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_connection_says_why, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_open_and_next, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_records, setup, teardown),
    };
    return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
