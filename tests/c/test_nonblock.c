/* test_nonblock.c - the event-loop API: pgspout_connect_start and
 * pgspout_conn_poll, pgspout_stream_start and pgspout_stream_poll. Every
 * call must return without waiting on the network (each is timed), the
 * waits are the test's own poll() on the descriptors the library names.
 * Needs PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* No single call may take this long: it would have waited on the network
 * (a server round trip on a loaded CI machine stays far below it). */
#define CALL_BOUND 0.25

static double slowest; /* the slowest library call of the current test */

static void timed_start(void) { slowest = 0; }
#define TIMED(expr)                                                                                \
    ({                                                                                             \
        double t0_ = tu_now();                                                                     \
        __typeof__(expr) r_ = (expr);                                                              \
        double d_ = tu_now() - t0_;                                                                \
        if (d_ > slowest)                                                                          \
            slowest = d_;                                                                          \
        r_;                                                                                        \
    })

/* Connect through pgspout_conn_poll, waiting in poll() as an event loop
 * would, for at most bound seconds. Returns the final code; *conn is the
 * handle (close it). */
static int connect_nb(const char *dsn, pgspout_options *o, pgspout_conn **conn, double bound,
                      int *polls)
{
    int rc = TIMED(pgspout_connect_start(dsn, o, conn));
    double end = tu_now() + bound;
    *polls = 0;
    while (rc == PGSPOUT_OK || rc == PGSPOUT_AGAIN) {
        int fd, ww, ms;
        rc = TIMED(pgspout_conn_poll(*conn, &fd, &ww, &ms));
        ++*polls;
        if (rc != PGSPOUT_AGAIN)
            break;
        assert_true(fd >= 0);
        if (tu_now() > end)
            return PGSPOUT_AGAIN; /* the caller's own give-up: never a hang */
        struct pollfd p = {fd, (short)(ww ? POLLOUT : POLLIN), 0};
        poll(&p, 1, ms < 0 || ms > 50 ? 50 : ms);
    }
    return rc;
}

/* Drive s with pgspout_stream_poll until rows are ready or it ended. */
static int poll_ready(pgspout_stream *s, double bound)
{
    double end = tu_now() + bound;
    for (;;) {
        int rc = TIMED(pgspout_stream_poll(s));
        if (rc != PGSPOUT_AGAIN && rc != PGSPOUT_PAUSED)
            return rc;
        if (tu_now() > end)
            return rc;
        int ms = pgspout_stream_wait_ms(s);
        struct pollfd p = {pgspout_stream_socket(s), POLLIN, 0};
        poll(&p, 1, ms < 0 || ms > 50 ? 50 : ms);
    }
}

/* Read every row of a started stream without blocking: the sum of column
 * 0 (int8 text) and the md5 of column 1 in row order. */
static int drain_rows(pgspout_stream *s, long long *sum, long *rows, char md5[33])
{
    tu_md5 m;
    tu_md5_init(&m);
    *sum = 0;
    *rows = 0;
    int rc;
    while ((rc = poll_ready(s, 30)) == PGSPOUT_OK) {
        const pgspout_chunk *ch;
        rc = TIMED(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch));
        assert_int_equal(rc, PGSPOUT_OK);
        for (int i = 0; i < pgspout_chunk_nrows(ch); i++) {
            const pgspout_row *r = pgspout_chunk_row(ch, i);
            *sum += atoll(pgspout_row_value(r, 0, NULL));
            if (pgspout_row_ncols(r) > 1) {
                size_t n;
                const char *v = pgspout_row_value(r, 1, &n);
                tu_md5_update(&m, v, n);
            }
            ++*rows;
        }
    }
    if (md5)
        tu_md5_hex(&m, md5);
    return rc;
}

static pgspout_conn *connect_ok(void)
{
    pgspout_conn *c = NULL;
    int polls;
    int rc = connect_nb(tu_dsn(), NULL, &c, 30, &polls);
    if (rc != PGSPOUT_OK)
        fail_msg("connect: %s: %s", pgspout_code_name(rc), pgspout_conn_error(c));
    return c;
}

/* ------------------------------------------------------------- connect */

static void test_connect_then_stream(void **state)
{
    (void)state;
    timed_start();
    pgspout_conn *c = connect_ok();
    assert_true(pgspout_conn_ok(c));
    assert_true(pgspout_conn_server_version(c) > 0);
    /* polling a connected handle says so again */
    assert_int_equal(pgspout_conn_poll(c, NULL, NULL, NULL), PGSPOUT_OK);
    /* the session is set up as pgspout_connect sets it */
    tu_expect_scalar(c, "SHOW extra_float_digits", "3");
    tu_expect_scalar(c, "SHOW client_encoding", "UTF8");

    pgspout_stream *s = NULL;
    pgspout_options *o = tu_opts("chunk_rows", "700", NULL);
    assert_int_equal(TIMED(pgspout_stream_start(c,
                                                "SELECT g::int8, md5(g::text) FROM "
                                                "generate_series(1, $1::int) g ORDER BY g",
                                                1, (const char *const[]){"50000"}, o, &s)),
                     PGSPOUT_OK);
    pgspout_options_free(o);
    long long sum;
    long rows;
    char md5[33];
    assert_int_equal(drain_rows(s, &sum, &rows, md5), PGSPOUT_DONE);
    assert_int_equal(rows, 50000);
    assert_int_equal(sum, 50000LL * 50001 / 2);
    assert_int_equal(pgspout_stream_ncols(s), 2);
    assert_string_equal(pgspout_stream_colname(s, 1), "md5");
    assert_string_equal(pgspout_stream_command_tag(s), "SELECT 50000");
    pgspout_stream_close(s);
    char *want = tu_scalar(c,
                           "SELECT md5(string_agg(md5(g::text), '' ORDER BY g)) FROM "
                           "generate_series(1, 50000) g",
                           0, NULL);
    assert_string_equal(md5, want);
    free(want);
    pgspout_conn_close(c);
    assert_true(slowest < tu_slack(CALL_BOUND));
}

/* A TCP listener on 127.0.0.1 that never answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_silent_listener_times_out(void **state)
{
    (void)state;
    int port;
    int lfd = silent_listener(&port);
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", port);
    pgspout_options *o = tu_opts("connect_timeout", "700ms", NULL);
    pgspout_conn *c = NULL;
    int polls;
    timed_start();
    double t0 = tu_now();
    int rc = connect_nb(dsn, o, &c, 10, &polls);
    double took = tu_now() - t0;
    assert_int_equal(rc, PGSPOUT_ECONNECT);
    assert_non_null(strstr(pgspout_conn_error(c), "timeout expired"));
    assert_true(took >= 0.69 && took < tu_slack(3.0));
    assert_true(polls >= 2);                     /* it went back to the loop */
    assert_true(slowest < tu_slack(CALL_BOUND)); /* and never waited inside */
    assert_false(pgspout_conn_ok(c));
    /* the failure is stable, and a stream refuses the handle */
    assert_int_equal(pgspout_conn_poll(c, NULL, NULL, NULL), PGSPOUT_ECONNECT);
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_start(c, "SELECT 1", 0, NULL, NULL, &s), PGSPOUT_ECONN);
    assert_null(s);
    pgspout_conn_close(c);

    /* without a timeout the caller gives up whenever it likes: closing a
     * connect in progress is immediate */
    pgspout_options_set(o, "connect_timeout", "0");
    rc = connect_nb(dsn, o, &c, 0.3, &polls);
    assert_int_equal(rc, PGSPOUT_AGAIN);
    double tc = tu_now();
    pgspout_conn_close(c);
    assert_true(tu_now() - tc < tu_slack(CALL_BOUND));
    pgspout_options_free(o);
    close(lfd);
}

static void test_bad_address(void **state)
{
    (void)state;
    int port;
    close(silent_listener(&port)); /* a port nobody listens on now */
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", port);
    pgspout_conn *c = NULL;
    int polls;
    timed_start();
    int rc = connect_nb(dsn, NULL, &c, 10, &polls);
    assert_int_equal(rc, PGSPOUT_ECONNECT);
    assert_non_null(strstr(pgspout_conn_error(c), "connection failed:"));
    assert_non_null(strstr(pgspout_conn_error(c), "refused"));
    pgspout_conn_close(c);
    /* an unparsable conninfo fails at the start, with libpq's reason */
    assert_int_equal(pgspout_connect_start("host=a =b", NULL, &c), PGSPOUT_ECONNECT);
    assert_non_null(strstr(pgspout_conn_error(c), "invalid connection string"));
    pgspout_conn_close(c);
    /* a port out of range: libpq refuses it (at the start or the first poll) */
    rc = connect_nb("host=127.0.0.1 port=99999 sslmode=disable", NULL, &c, 10, &polls);
    assert_int_equal(rc, PGSPOUT_ECONNECT);
    pgspout_conn_close(c);
    assert_int_equal(pgspout_connect_start(NULL, NULL, &c), PGSPOUT_EINVAL);
    assert_null(c);
    assert_int_equal(pgspout_conn_poll(NULL, NULL, NULL, NULL), PGSPOUT_EINVAL);
    assert_true(slowest < tu_slack(CALL_BOUND));
}

/* -------------------------------------------------------------- streams */

static void exec_ok(pgspout_conn *c, const char *sql)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    const pgspout_row *r;
    while (rc == PGSPOUT_OK)
        rc = pgspout_stream_next(s, &r);
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", sql, pgspout_stream_error(s));
    pgspout_stream_close(s);
}

static void test_start_never_waits(void **state)
{
    (void)state;
    pgspout_conn *c = connect_ok();
    /* statement_timeout, a savepoint inside a transaction and option
     * arrow's describe step are all steps of their own */
    exec_ok(c, "BEGIN");
    pgspout_options *o = tu_opts("statement_timeout", "20s", "arrow", "on", NULL);
    pgspout_stream *s = NULL;
    timed_start();
    assert_int_equal(
        TIMED(pgspout_stream_start(c, "SELECT pg_sleep(0.4)::text, 7::int8 AS x", 0, NULL, o, &s)),
        PGSPOUT_OK);
    assert_int_equal(TIMED(pgspout_stream_poll(s)), PGSPOUT_AGAIN);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_RUNNING);
    double t0 = tu_now();
    assert_int_equal(poll_ready(s, 10), PGSPOUT_OK);
    assert_true(tu_now() - t0 >= 0.35); /* the sleep ran on the server */
    assert_true(pgspout_stream_binary(s));
    struct ArrowArrayStream as;
    assert_int_equal(pgspout_stream_arrow(s, &as), PGSPOUT_OK);
    struct ArrowArray arr;
    assert_int_equal(TIMED(as.get_next(&as, &arr)), 0); /* buffered: no wait */
    assert_int_equal(arr.length, 1);
    arr.release(&arr);
    assert_int_equal(poll_ready(s, 10), PGSPOUT_DONE);
    as.release(&as);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    assert_true(slowest < tu_slack(CALL_BOUND));
    /* statement_timeout is set by a step of its own, and the savepoint
     * (released) left the transaction going on */
    o = tu_opts("statement_timeout", "15s", NULL);
    assert_int_equal(
        pgspout_stream_start(c, "SELECT current_setting('statement_timeout')", 0, NULL, o, &s),
        PGSPOUT_OK);
    assert_int_equal(poll_ready(s, 10), PGSPOUT_OK);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(pgspout_chunk_row(ch, 0), 0, NULL), "15s");
    pgspout_stream_close(s);
    pgspout_options_free(o);
    tu_expect_scalar(c, "SELECT 1", "1");
    exec_ok(c, "COMMIT");
    pgspout_conn_close(c);
}

static void test_errors_through_poll(void **state)
{
    (void)state;
    pgspout_conn *c = connect_ok();
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_start(c, "SELECT 1/0", 0, NULL, NULL, &s), PGSPOUT_OK);
    assert_int_equal(poll_ready(s, 10), PGSPOUT_ESQL);
    assert_string_equal(pgspout_stream_sqlstate(s), "22012");
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_FAILED);
    /* the same code again, and a second stream waits for this one */
    assert_int_equal(pgspout_stream_poll(s), PGSPOUT_ESQL);
    pgspout_stream *s2 = NULL;
    assert_int_equal(pgspout_stream_start(c, "SELECT 1", 0, NULL, NULL, &s2), PGSPOUT_OK);
    pgspout_stream_close(s2);
    pgspout_stream_close(s);
    /* a refused statement under option arrow fails at its describe step */
    pgspout_options *o = tu_opts("arrow", "on", NULL);
    assert_int_equal(pgspout_stream_start(c, "SELECT nosuchcolumn", 0, NULL, o, &s), PGSPOUT_OK);
    assert_int_equal(poll_ready(s, 10), PGSPOUT_ESQL);
    assert_string_equal(pgspout_stream_sqlstate(s), "42703");
    pgspout_stream_close(s);
    pgspout_options_free(o);
    /* a timeout while the server has not answered yet */
    o = tu_opts("timeout", "200ms", NULL);
    assert_int_equal(pgspout_stream_start(c, "SELECT pg_sleep(5)", 0, NULL, o, &s), PGSPOUT_OK);
    double t0 = tu_now();
    assert_int_equal(poll_ready(s, 10), PGSPOUT_ETIMEOUT);
    assert_true(tu_now() - t0 < tu_slack(3));
    pgspout_stream_close(s);
    pgspout_options_free(o);
    tu_expect_scalar(c, "SELECT 2", "2");
    pgspout_conn_close(c);
}

static void test_cancel_without_waiting(void **state)
{
    (void)state;
    pgspout_conn *c = connect_ok();
    for (int phase = 0; phase < 2; phase++) {
        /* 0: before the first rows; 1: in the middle of the rows */
        const char *sql = phase == 0 ? "SELECT pg_sleep(30)"
                                     : "SELECT g, repeat('x', 100) FROM generate_series(1, "
                                       "10000000) g";
        pgspout_stream *s = NULL;
        assert_int_equal(pgspout_stream_start(c, sql, 0, NULL, NULL, &s), PGSPOUT_OK);
        if (phase == 0) {
            assert_int_equal(poll_ready(s, 0.2), PGSPOUT_AGAIN);
        } else {
            assert_int_equal(poll_ready(s, 10), PGSPOUT_OK);
            const pgspout_chunk *ch;
            assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_OK);
        }
        assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
        timed_start();
        double t0 = tu_now();
        assert_int_equal(poll_ready(s, 10), PGSPOUT_ECANCELLED);
        assert_true(tu_now() - t0 < tu_slack(3));
        assert_true(slowest < tu_slack(CALL_BOUND));
        assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CANCELLED);
        pgspout_stream_close(s);
        assert_true(pgspout_conn_ok(c));
        tu_expect_scalar(c, "SELECT 3", "3");
    }
    pgspout_conn_close(c);
}

static void test_large_parameter(void **state)
{
    (void)state;
    pgspout_conn *c = connect_ok();
    size_t n = 8u << 20; /* more than a socket buffer: the send waits to write */
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    char want[33];
    tu_md5_str(big, n, want);
    pgspout_stream *s = NULL;
    timed_start();
    assert_int_equal(TIMED(pgspout_stream_start(c, "SELECT length($1)::int8, md5($1)", 1,
                                                (const char *const *)&big, NULL, &s)),
                     PGSPOUT_OK);
    free(big); /* copied */
    assert_int_equal(poll_ready(s, 30), PGSPOUT_OK);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_OK);
    const pgspout_row *r = pgspout_chunk_row(ch, 0);
    assert_string_equal(pgspout_row_value(r, 0, NULL), "8388608");
    assert_string_equal(pgspout_row_value(r, 1, NULL), want); /* the server's md5 */
    assert_int_equal(poll_ready(s, 10), PGSPOUT_DONE);
    pgspout_stream_close(s);
    assert_true(slowest < tu_slack(CALL_BOUND));
    pgspout_conn_close(c);
}

static void test_pause_resume(void **state)
{
    (void)state;
    pgspout_conn *c = connect_ok();
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    pgspout_stream *s = NULL;
    assert_int_equal(
        pgspout_stream_start(c, "SELECT g::int8 FROM generate_series(1, 1000) g", 0, NULL, o, &s),
        PGSPOUT_OK);
    assert_int_equal(poll_ready(s, 10), PGSPOUT_OK);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_OK);
    long got = pgspout_chunk_nrows(ch);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_poll(s), PGSPOUT_PAUSED);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_OK);
    /* the descriptor woke for the resume */
    struct pollfd p = {pgspout_stream_socket(s), POLLIN, 0};
    assert_int_equal(poll(&p, 1, 1000), 1);
    long long sum;
    long rows;
    assert_int_equal(drain_rows(s, &sum, &rows, NULL), PGSPOUT_DONE);
    assert_int_equal(got + rows, 1000);
    pgspout_stream_close(s);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

int main(void)
{
    int gate = tu_db_gate("test_nonblock");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_then_stream),
        cmocka_unit_test(test_silent_listener_times_out),
        cmocka_unit_test(test_bad_address),
        cmocka_unit_test(test_start_never_waits),
        cmocka_unit_test(test_errors_through_poll),
        cmocka_unit_test(test_cancel_without_waiting),
        cmocka_unit_test(test_large_parameter),
        cmocka_unit_test(test_pause_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
