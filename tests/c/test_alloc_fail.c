/* test_alloc_fail.c - allocation-failure injection, as SQLite's malloc tests
 * do it (issue 10). Built only with -DPGSPOUT_FAULT_INJECTION=ON, which routes
 * the core's malloc/calloc/realloc/strdup and the libpq calls that fail only
 * when libpq is out of memory (PQcopyResult, PQgetCancel, PQconnectdbParams,
 * PQconninfoParse) through one counter (core/src/alloc.h).
 *
 * A session covers the public API: options, connect, streams (rows and
 * chunks, JSON, growing buffers, max_rows, a SQL error after rows,
 * max_memory, pause, cancel, close while running, a stream inside the
 * caller's transaction), conn_cancel, stats and their JSON, the metrics as
 * Prometheus text and JSON, and the registry (open, fetch whole and partial
 * chunks, pause/resume, stats, list, close). It runs once with no failure to
 * count the calls (K), then for N = 1, 2, ... with the N-th call failing
 * ("single"), and again with every call from the N-th on failing
 * ("persist"), until N is past K and the fault no longer fires. After every
 * call it checks:
 *   - the code is one that call may return: OK/DONE, PGSPOUT_ENOMEM, or the
 *     outcome the step provokes (ESQL, EMEMORY, ECANCELLED, LIMITED...);
 *     ECONN only once the connection reports itself unusable;
 *   - rows come in order, each exactly once (streams and registry), and the
 *     JSON and Prometheus texts handed out are valid;
 *   - a failed stream says FAILED, repeats its code and has an error text;
 * and after every session, with injection off: a connection that says it is
 * usable (pgspout_conn_ok) runs a query, the registry is empty, and the
 * metrics add up (no stream left active, paused or holding bytes; every
 * started stream ended exactly once). Leaks: under ASan (LeakSanitizer) a
 * leak check runs after every session, so the report names the N.
 *
 *   test_alloc_fail            both modes, every N
 *   PGSPOUT_OOM_N=37 [PGSPOUT_OOM_PERSIST=1] test_alloc_fail   one run, to debug
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_store.h" /* active streams, read without allocating */
#include "pgspout.h"
#include "testutil.h"

#define PGS_ALLOC_CONTROL_ONLY /* the test's own allocations are not counted */
#include "alloc.h"

/* LeakSanitizer's mid-run check, when the binary has it (ASan builds). */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static const char *dsn;
static long cur_n;      /* the failing call, 0 = none */
static int cur_persist; /* every call from cur_n on fails */
static const char *step = "start";
static int verbose; /* PGSPOUT_OOM_VERBOSE=1: each step with its time */

static const char *fired_in; /* the step in which the first failure fired */

static void set_step(const char *name)
{
    static double t0;
    if (fired_in == NULL && cur_n > 0 && pgs_fault_failures() > 0)
        fired_in = step;
    if (verbose) {
        double now = tu_now();
        if (t0 == 0)
            t0 = now;
        fprintf(stderr, "%8.3f  %s\n", now - t0, name);
    }
    step = name;
}

static void die(int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
static void die(int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "test_alloc_fail: FAIL at N=%ld (%s), step \"%s\", line %d: %s: ", cur_n,
            cur_persist ? "persist" : "single", step, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  rerun: PGSPOUT_OOM_N=%ld PGSPOUT_OOM_PERSIST=%d test_alloc_fail\n", cur_n,
            cur_persist);
    exit(1);
}
/* CHECK(cond, fmt, ...): on failure, the N, the step, cond and the message. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            die(__LINE__, #cond, __VA_ARGS__);                                                     \
    } while (0)
#define CHECK_RC(rc, ok) CHECK(ok, "unexpected code %s (%d)", pgspout_code_name(rc), rc)

static int is_enomem(int rc) { return rc == PGSPOUT_ENOMEM; }

/* ------------------------------------------------------------ the pieces */

static void check_json(const char *what, const char *s, size_t n)
{
    CHECK(tu_json_valid(s, n), "tu_json_valid: invalid JSON from %s: %.*s", what,
          (int)(n > 300 ? 300 : n), s);
}

/* The first column of a row is its 1-based number: check it is `*expect`. */
static void check_row(const pgspout_row *r, long *expect)
{
    size_t len;
    const char *v = pgspout_row_value(r, 0, &len);
    CHECK(v != NULL && strtol(v, NULL, 10) == *expect, "in order: row %s, want %ld",
          v ? v : "(null)", *expect);
    (*expect)++;
}

/* NDJSON whose lines are objects with the row number as first value
 * ({"g":N,...}): every line valid, numbered from *expect on. Returns lines. */
static int check_ndjson(const char *s, size_t n, long *expect)
{
    int lines = 0;
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        CHECK(nl != NULL, "NDJSON ends in a newline: %s", s);
        check_json("NDJSON line", p, (size_t)(nl - p));
        const char *colon = memchr(p, ':', (size_t)(nl - p));
        CHECK(colon && strtol(colon + 1, NULL, 10) == *expect, "in order: line %.*s, want row %ld",
              (int)(nl - p), p, *expect);
        (*expect)++;
        lines++;
        p = nl + 1;
    }
    return lines;
}

static void check_stats(pgspout_stream *s)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    int rc = pgspout_stream_stats(s, &st);
    CHECK_RC(rc, rc == PGSPOUT_OK);
    char *js = pgspout_stream_stats_json(s); /* NULL: out of memory */
    if (js)
        check_json("stream_stats_json", js, strlen(js));
    pgspout_free(js);
}

/* A stream that returned code rc < 0: failed (or cancelled) for good. */
static void check_failed(pgspout_stream *s, int rc, int want_state)
{
    const pgspout_row *r;
    CHECK(pgspout_stream_state(s) == want_state, "end state: state %s, want %s",
          pgspout_state_name(pgspout_stream_state(s)), pgspout_state_name(want_state));
    CHECK(pgspout_stream_errcode(s) == rc, "errcode: errcode %d, want %d",
          pgspout_stream_errcode(s), rc);
    CHECK(pgspout_stream_error(s) != NULL && *pgspout_stream_error(s), "error text: empty");
    int again = pgspout_stream_next(s, &r);
    CHECK(again == rc, "sticky: next after the end gave %s, want %s", pgspout_code_name(again),
          pgspout_code_name(rc));
}

/* Open sql on c. Returns the stream, or NULL when open failed as it may. */
static pgspout_stream *open_stream(pgspout_conn *c, const char *sql, const pgspout_options *o,
                                   int other_ok)
{
    pgspout_stream *s = NULL;
    int usable = pgspout_conn_ok(c);
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    if (rc == PGSPOUT_OK) {
        CHECK(s != NULL && usable, "open: OK with stream %p on a connection ok=%d", (void *)s,
              usable);
        return s;
    }
    CHECK_RC(rc, is_enomem(rc) || (rc == PGSPOUT_ECONN && !usable) || (other_ok && rc == other_ok));
    if (rc == PGSPOUT_ECONN) { /* the reason once, not wrapped again by every open */
        const char *why = strstr(pgspout_conn_error(c), "not usable");
        CHECK(why == NULL || strstr(why + 1, "not usable") == NULL, "conn_error \"%s\"",
              pgspout_conn_error(c));
    }
    if (s) {
        int state = rc == PGSPOUT_ECANCELLED ? PGSPOUT_STATE_CANCELLED : PGSPOUT_STATE_FAILED;
        check_failed(s, rc, state);
        pgspout_stream_close(s);
    }
    return NULL;
}

/* Rows 1..20: next and next_chunk in turn, JSON of rows and chunks, a pause
 * with a non-blocking read in it, stats. */
static void stream_rows(pgspout_conn *c, const pgspout_options *o)
{
    set_step("stream rows: open");
    pgspout_stream *s = open_stream(
        c, "SELECT g, 'row ' || g AS name, g % 3 = 0 AS third FROM generate_series(1, 20) g", o, 0);
    if (s == NULL)
        return;
    CHECK(pgspout_stream_ncols(s) == 3, "columns: ncols %d", pgspout_stream_ncols(s));
    long expect = 1;
    int paused = 0, rc;
    for (int turn = 0;; turn++) {
        if (turn % 2 == 0) {
            set_step("stream rows: next");
            const pgspout_row *r;
            rc = pgspout_stream_next(s, &r);
            if (rc == PGSPOUT_OK) {
                long at = expect;
                check_row(r, &expect);
                const char *js;
                size_t len;
                set_step("stream rows: row_json");
                int jr = pgspout_row_json(s, r, &js, &len);
                CHECK_RC(jr, jr == PGSPOUT_OK || is_enomem(jr));
                if (jr == PGSPOUT_OK) {
                    check_json("row_json", js, len);
                    const char *colon = memchr(js, ':', len);
                    CHECK(colon && strtol(colon + 1, NULL, 10) == at,
                          "row_json of the row: %s, want row %ld", js, at);
                }
            }
        } else {
            set_step("stream rows: next_chunk");
            const pgspout_chunk *ch;
            rc = pgspout_stream_next_chunk(s, 0, &ch);
            if (rc == PGSPOUT_OK) {
                long at = expect;
                for (int i = 0; i < pgspout_chunk_nrows(ch); i++)
                    check_row(pgspout_chunk_row(ch, i), &expect);
                const char *js;
                size_t len;
                set_step("stream rows: chunk_ndjson");
                int jr = pgspout_chunk_ndjson(s, ch, &js, &len);
                CHECK_RC(jr, jr == PGSPOUT_OK || is_enomem(jr));
                if (jr == PGSPOUT_OK)
                    CHECK(check_ndjson(js, len, &at) == pgspout_chunk_nrows(ch),
                          "one line per row: lines");
            }
        }
        if (rc == PGSPOUT_DONE) {
            CHECK(expect == 21, "all rows: DONE after %ld rows", expect - 1);
            CHECK(pgspout_stream_state(s) == PGSPOUT_STATE_DONE, "state DONE");
            break;
        }
        if (rc != PGSPOUT_OK) {
            CHECK_RC(rc, is_enomem(rc));
            check_failed(s, rc, PGSPOUT_STATE_FAILED);
            break;
        }
        if (!paused && expect > 8) {
            set_step("stream rows: pause");
            paused = 1;
            rc = pgspout_stream_pause(s);
            CHECK_RC(rc, rc == PGSPOUT_OK);
            CHECK(pgspout_stream_state(s) == PGSPOUT_STATE_PAUSED, "paused");
            check_stats(s);
            const pgspout_chunk *ch;
            rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch);
            /* rows still buffered are handed out; an end already read
             * (all 20 rows in one chunk without chunk_rows) is reported */
            CHECK_RC(rc, rc == PGSPOUT_OK || rc == PGSPOUT_PAUSED || rc == PGSPOUT_DONE);
            if (rc == PGSPOUT_OK)
                for (int i = 0; i < pgspout_chunk_nrows(ch); i++)
                    check_row(pgspout_chunk_row(ch, i), &expect);
            int ended = rc == PGSPOUT_DONE;
            if (ended)
                CHECK(expect == 21, "all rows: DONE after %ld rows", expect - 1);
            rc = pgspout_stream_resume(s);
            CHECK_RC(rc, ended ? rc == PGSPOUT_ESTATE : rc == PGSPOUT_OK);
        }
    }
    set_step("stream rows: stats after the end");
    check_stats(s);
    pgspout_stream_close(s);
}

/* 300 rows of 1 kB in chunks of up to 200: the row array and the arena grow
 * (a row that does not fit waits as the carry), and so do the JSON buffers. */
static void stream_big(pgspout_conn *c, pgspout_options *o)
{
    set_step("stream big rows: open");
    pgspout_options_set(o, "chunk_rows", "200");
    pgspout_stream *s =
        open_stream(c, "SELECT g, repeat('x', 1000) FROM generate_series(1, 300) g", o, 0);
    pgspout_options_set(o, "chunk_rows", "4");
    if (s == NULL)
        return;
    long expect = 1;
    int rc;
    for (;;) {
        set_step("stream big rows: next_chunk");
        const pgspout_chunk *ch;
        rc = pgspout_stream_next_chunk(s, 0, &ch);
        if (rc != PGSPOUT_OK)
            break;
        long at = expect;
        for (int i = 0; i < pgspout_chunk_nrows(ch); i++)
            check_row(pgspout_chunk_row(ch, i), &expect);
        set_step("stream big rows: row_json");
        const char *js;
        size_t len;
        int jr = pgspout_row_json(s, pgspout_chunk_row(ch, 0), &js, &len);
        CHECK_RC(jr, jr == PGSPOUT_OK || is_enomem(jr));
        if (jr == PGSPOUT_OK)
            check_json("row_json", js, len);
        set_step("stream big rows: chunk_ndjson");
        jr = pgspout_chunk_ndjson(s, ch, &js, &len);
        CHECK_RC(jr, jr == PGSPOUT_OK || is_enomem(jr));
        if (jr == PGSPOUT_OK)
            CHECK(check_ndjson(js, len, &at) == pgspout_chunk_nrows(ch), "one line per row: lines");
    }
    if (rc == PGSPOUT_DONE) {
        CHECK(expect == 301, "all rows: DONE after %ld rows", expect - 1);
    } else {
        CHECK_RC(rc, is_enomem(rc));
        check_failed(s, rc, PGSPOUT_STATE_FAILED);
    }
    pgspout_stream_close(s);
}

static int keep_even(const pgspout_row *r, void *ud)
{
    (void)ud;
    return strtol(pgspout_row_value(r, 0, NULL), NULL, 10) % 2 == 0;
}

static void count_progress(const pgspout_stats *st, void *ud)
{
    (void)st;
    (*(int *)ud)++;
}

/* An event loop's way: next_chunk(PGSPOUT_NONBLOCK) and poll on the stream's
 * descriptor, with a filter keeping even rows and a progress hook. */
static void stream_nonblock(pgspout_conn *c, pgspout_options *o)
{
    set_step("stream non-blocking: open");
    int progress_calls = 0;
    pgspout_options_set_filter(o, keep_even, NULL);
    pgspout_options_set_progress(o, count_progress, &progress_calls);
    pgspout_options_set(o, "progress_rows", "5");
    pgspout_stream *s = open_stream(c, "SELECT g FROM generate_series(1, 40) g", o, 0);
    pgspout_options_set_filter(o, NULL, NULL);
    pgspout_options_set_progress(o, NULL, NULL);
    pgspout_options_set(o, "progress_rows", "0");
    if (s == NULL)
        return;
    long expect = 2;
    int rc;
    for (;;) {
        set_step("stream non-blocking: next_chunk");
        const pgspout_chunk *ch;
        rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch);
        if (rc == PGSPOUT_AGAIN) {
            struct pollfd pfd = {.fd = pgspout_stream_socket(s), .events = POLLIN};
            int ms = pgspout_stream_wait_ms(s);
            CHECK(poll(&pfd, 1, ms < 0 || ms > 5000 ? 5000 : ms) >= 0, "poll");
            continue;
        }
        if (rc != PGSPOUT_OK)
            break;
        for (int i = 0; i < pgspout_chunk_nrows(ch); i++) {
            check_row(pgspout_chunk_row(ch, i), &expect);
            expect++; /* odd rows are filtered out */
        }
    }
    if (rc == PGSPOUT_DONE) {
        CHECK(expect == 42, "all even rows: DONE at %ld", expect);
        pgspout_stats st = PGSPOUT_STATS_INIT;
        pgspout_stream_stats(s, &st);
        CHECK(st.rows_filtered == 20 && st.rows_delivered == 20,
              "filtered %" PRIu64 ", delivered %" PRIu64, st.rows_filtered, st.rows_delivered);
        CHECK(progress_calls > 0, "progress hook called");
    } else {
        CHECK_RC(rc, is_enomem(rc));
        check_failed(s, rc, PGSPOUT_STATE_FAILED);
    }
    pgspout_stream_close(s);
}

/* The event loop's calls: pgspout_connect_start/_conn_poll, then
 * pgspout_stream_start/_poll (statement_timeout, option arrow's describe
 * and the query as separate steps) and next_chunk, waiting in poll(). */
static void event_loop_calls(const pgspout_options *o)
{
    set_step("connect_start");
    pgspout_conn *c = NULL;
    int rc = pgspout_connect_start(dsn, o, &c);
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    while (rc == PGSPOUT_OK || rc == PGSPOUT_AGAIN) {
        set_step("conn_poll");
        int fd, ww, ms;
        rc = pgspout_conn_poll(c, &fd, &ww, &ms);
        if (rc == PGSPOUT_AGAIN) {
            struct pollfd pfd = {.fd = fd, .events = (short)(ww ? POLLOUT : POLLIN)};
            CHECK(poll(&pfd, 1, 5000) >= 0, "poll");
        } else if (rc == PGSPOUT_OK) {
            break;
        }
    }
    CHECK_RC(rc, rc == PGSPOUT_OK || rc == PGSPOUT_ECONNECT || is_enomem(rc));
    if (rc != PGSPOUT_OK) {
        CHECK(c == NULL || *pgspout_conn_error(c), "error text: empty");
        pgspout_conn_close(c);
        return;
    }
    for (int arrow = 0; arrow < 2; arrow++) {
        set_step(arrow ? "stream_start arrow" : "stream_start");
        pgspout_options *so = pgspout_options_new(); /* NULL: the defaults */
        int arrow_on = 0;
        if (so) {
            pgspout_options_set(so, "chunk_rows", "3");
            pgspout_options_set(so, "statement_timeout", arrow ? "20s" : "0");
            arrow_on =
                pgspout_options_set(so, "arrow", arrow ? "on" : "off") == PGSPOUT_OK && arrow;
        }
        pgspout_stream *s = NULL;
        int usable = pgspout_conn_ok(c);
        rc = pgspout_stream_start(c, "SELECT g FROM generate_series(1, 10) g", 0, NULL, so, &s);
        pgspout_options_free(so);
        CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc) || (rc == PGSPOUT_ECONN && !usable));
        if (rc != PGSPOUT_OK) {
            if (s)
                check_failed(s, rc, PGSPOUT_STATE_FAILED);
            pgspout_stream_close(s);
            continue;
        }
        long expect = 1;
        for (;;) {
            set_step("stream_poll");
            rc = pgspout_stream_poll(s);
            if (rc == PGSPOUT_AGAIN) {
                struct pollfd pfd = {.fd = pgspout_stream_socket(s), .events = POLLIN};
                CHECK(poll(&pfd, 1, 5000) >= 0, "poll");
                continue;
            }
            if (rc != PGSPOUT_OK || arrow_on)
                break;
            const pgspout_chunk *ch;
            rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch);
            CHECK_RC(rc, rc == PGSPOUT_OK);
            for (int i = 0; i < pgspout_chunk_nrows(ch); i++)
                check_row(pgspout_chunk_row(ch, i), &expect);
        }
        if (arrow_on && rc == PGSPOUT_OK)
            CHECK(pgspout_stream_binary(s), "option arrow: binary results");
        else if (rc == PGSPOUT_DONE)
            CHECK(expect == 11, "DONE after %ld rows", expect - 1);
        else {
            CHECK_RC(rc, is_enomem(rc) || (rc == PGSPOUT_ECONN && !pgspout_conn_ok(c)));
            /* as check_failed, through poll (next refuses option-arrow streams) */
            CHECK(pgspout_stream_state(s) == PGSPOUT_STATE_FAILED, "state %s",
                  pgspout_state_name(pgspout_stream_state(s)));
            CHECK(pgspout_stream_poll(s) == rc, "sticky: poll after the end");
            CHECK(*pgspout_stream_error(s), "error text: empty");
        }
        pgspout_stream_close(s);
    }
    pgspout_conn_close(c);
}

/* Option json: the describe, the catalog query for a catalog row type and
 * an array of it, the type trees, and JSON rows through them. */
static void stream_json_types(pgspout_conn *c)
{
    set_step("stream json types: options");
    pgspout_options *jo = pgspout_options_new();
    if (jo == NULL)
        return;
    int rc = pgspout_options_set(jo, "json", "on");
    CHECK_RC(rc, rc == PGSPOUT_OK);
    set_step("stream json types: open");
    pgspout_stream *s = open_stream(c,
                                    "SELECT g, a, ARRAY[a, NULL] AS arr FROM pg_am a, "
                                    "generate_series(1, 3) g WHERE a.amname = 'heap' ORDER BY g",
                                    jo, 0);
    pgspout_options_free(jo);
    if (s == NULL)
        return;
    long expect = 1;
    for (;;) {
        set_step("stream json types: next");
        const pgspout_row *r;
        rc = pgspout_stream_next(s, &r);
        if (rc != PGSPOUT_OK)
            break;
        check_row(r, &expect);
        set_step("stream json types: row_json");
        const char *js;
        size_t len;
        int jr = pgspout_row_json(s, r, &js, &len);
        CHECK_RC(jr, jr == PGSPOUT_OK || is_enomem(jr));
        if (jr == PGSPOUT_OK) {
            check_json("row_json", js, len);
            CHECK(strstr(js, "\"a\":{\"oid\":\"2\",\"amname\":\"heap\"") != NULL &&
                      strstr(js, "\"amtype\":\"t\"},null]") != NULL,
                  "row_json renders the composite: %s", js);
        }
    }
    if (rc == PGSPOUT_DONE) {
        CHECK(expect == 4, "all rows: DONE after %ld rows", expect - 1);
    } else {
        CHECK_RC(rc, is_enomem(rc));
        check_failed(s, rc, PGSPOUT_STATE_FAILED);
    }
    pgspout_stream_close(s);
}

/* Read a stream to its end, rows numbered from 1: returns the end code. */
static int drain_rows(pgspout_stream *s, long *expect)
{
    for (;;) {
        const pgspout_row *r;
        int rc = pgspout_stream_next(s, &r);
        if (rc != PGSPOUT_OK)
            return rc;
        check_row(r, expect);
    }
}

/* max_rows 7 of 1000 rows: LIMITED (the rest is cancelled on the server). */
static void stream_limited(pgspout_conn *c, pgspout_options *o)
{
    set_step("stream max_rows: open");
    pgspout_options_set(o, "max_rows", "7");
    pgspout_stream *s = open_stream(c, "SELECT g FROM generate_series(1, 1000) g", o, 0);
    pgspout_options_set(o, "max_rows", "0");
    if (s == NULL)
        return;
    set_step("stream max_rows: next");
    long expect = 1;
    int rc = drain_rows(s, &expect);
    if (rc == PGSPOUT_DONE) {
        CHECK(expect == 8, "max_rows: DONE after %ld rows", expect - 1);
        CHECK(pgspout_stream_state(s) == PGSPOUT_STATE_LIMITED, "LIMITED: state %s",
              pgspout_state_name(pgspout_stream_state(s)));
    } else {
        CHECK_RC(rc, is_enomem(rc));
        check_failed(s, rc, PGSPOUT_STATE_FAILED);
    }
    pgspout_stream_close(s);
}

/* Two rows, then division by zero: ESQL with its SQLSTATE. */
static void stream_sql_error(pgspout_conn *c, const pgspout_options *o)
{
    set_step("stream SQL error: open");
    pgspout_stream *s =
        open_stream(c, "SELECT g, 10 / (3 - g) FROM generate_series(1, 5) g", o, PGSPOUT_ESQL);
    if (s == NULL)
        return;
    set_step("stream SQL error: next");
    long expect = 1;
    int rc = drain_rows(s, &expect);
    CHECK_RC(rc, rc == PGSPOUT_ESQL || is_enomem(rc));
    if (rc == PGSPOUT_ESQL) {
        CHECK(expect == 3, "rows before the error: ESQL after %ld rows", expect - 1);
        CHECK(strcmp(pgspout_stream_sqlstate(s), "22012") == 0, "22012: SQLSTATE %s",
              pgspout_stream_sqlstate(s));
    }
    check_failed(s, rc, PGSPOUT_STATE_FAILED);
    pgspout_stream_close(s);
}

/* A row bigger than max_memory: EMEMORY from open. */
static void stream_memory_limit(pgspout_conn *c, pgspout_options *o)
{
    set_step("stream max_memory: open");
    pgspout_options_set(o, "max_memory", "1024");
    pgspout_stream *s = open_stream(c, "SELECT repeat('x', 4000)", o, PGSPOUT_EMEMORY);
    pgspout_options_set(o, "max_memory", "64MB");
    CHECK(s == NULL, "EMEMORY at open: opened");
}

/* Two rows at once (each over the server's 8 kB send buffer, so they are
 * flushed), then the query sleeps: a cancel or a close stops it at once. A
 * connection marked broken when a cancel cannot be sent leaves its backend
 * asleep for at most 2 s. */
#define STOP_SQL                                                                                   \
    "SELECT g, repeat('x', 9000), pg_sleep(CASE WHEN g > 2 THEN 2 ELSE 0 END) "                    \
    "FROM generate_series(1, 10) g"

/* One row, then cancel (ECANCELLED), or close while running. */
static void stream_stop(pgspout_conn *c, const pgspout_options *o, int cancel)
{
    set_step(cancel ? "stream cancel: open" : "stream close running: open");
    pgspout_stream *s = open_stream(c, STOP_SQL, o, 0);
    if (s == NULL)
        return;
    const pgspout_row *r;
    long expect = 1;
    int rc = pgspout_stream_next(s, &r);
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    if (rc != PGSPOUT_OK) {
        check_failed(s, rc, PGSPOUT_STATE_FAILED);
    } else {
        check_row(r, &expect);
        if (cancel) {
            set_step("stream cancel: cancel");
            rc = pgspout_stream_cancel(s);
            CHECK_RC(rc, rc == PGSPOUT_OK);
            CHECK(pgspout_stream_state(s) == PGSPOUT_STATE_CANCELLED, "CANCELLED");
            rc = pgspout_stream_next(s, &r);
            CHECK_RC(rc, rc == PGSPOUT_ECANCELLED);
            check_failed(s, rc, PGSPOUT_STATE_CANCELLED);
            check_stats(s);
        }
    }
    set_step(cancel ? "stream cancel: close" : "stream close running: close");
    pgspout_stream_close(s);
}

static void metrics_texts(void)
{
    set_step("metrics_prometheus");
    char *p = pgspout_metrics_prometheus();
    if (p) {
        tu_expo e;
        CHECK(tu_expo_parse(p, &e) == 0, "valid exposition: %s", e.err);
        tu_expo_free(&e);
    }
    pgspout_free(p);
    set_step("metrics_json");
    char *j = pgspout_metrics_json();
    if (j)
        check_json("metrics_json", j, strlen(j));
    pgspout_free(j);
}

static void registry(const pgspout_options *o)
{
    set_step("registry: open");
    uint64_t id = 0;
    char *err = NULL;
    int rc = pgspout_registry_open(dsn, "SELECT g, 'r' || g AS name FROM generate_series(1, 15) g",
                                   0, NULL, o, &id, &err);
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    pgspout_free(err);
    err = NULL;
    if (rc != PGSPOUT_OK) {
        CHECK(id == 0, "no id on failure: id %" PRIu64, id);
        return;
    }
    long expect = 1;
    int enomem_in_a_row = 0;
    for (int turn = 0;; turn++) {
        char *out = NULL;
        size_t len = 0;
        int nrows = -1;
        set_step("registry: fetch");
        rc = pgspout_registry_fetch(id, turn % 2 ? 3 : 0, &out, &len, &nrows, &err);
        pgspout_free(err);
        err = NULL;
        if (rc == PGSPOUT_OK) {
            enomem_in_a_row = 0;
            CHECK(out != NULL && nrows > 0, "rows: out %p nrows %d", (void *)out, nrows);
            CHECK(check_ndjson(out, len, &expect) == nrows, "nrows lines");
            pgspout_free(out);
        } else if (rc == PGSPOUT_DONE) {
            CHECK(out == NULL && expect == 16, "every row once: DONE after %ld rows", expect - 1);
            break;
        } else {
            CHECK_RC(rc, is_enomem(rc));
            CHECK(out == NULL, "no text on error");
            /* a failed stream repeats its code; a failed rendering is retried */
            if (++enomem_in_a_row == 3)
                break;
        }
        if (turn == 1) {
            set_step("registry: pause, stats, list, resume");
            rc = pgspout_registry_pause(id);
            CHECK_RC(rc, rc == PGSPOUT_OK || rc == PGSPOUT_ESTATE);
            char *js = pgspout_registry_stats_json(id);
            if (js)
                check_json("registry_stats_json", js, strlen(js));
            pgspout_free(js);
            js = pgspout_registry_list_json();
            if (js)
                check_json("registry_list_json", js, strlen(js));
            pgspout_free(js);
            rc = pgspout_registry_resume(id);
            CHECK_RC(rc, rc == PGSPOUT_OK || rc == PGSPOUT_ESTATE);
        }
    }
    set_step("registry: close");
    rc = pgspout_registry_close(id);
    CHECK_RC(rc, rc == PGSPOUT_OK);
}

/* A connection closed under its running stream (on a connection of its
 * own): the stream ends CLOSED and is closed after it. */
static void conn_close_under_stream(const pgspout_options *o)
{
    set_step("conn_close under a stream: connect");
    pgspout_conn *c = NULL;
    int rc = pgspout_connect_opts(dsn, o, &c);
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    if (rc != PGSPOUT_OK) {
        pgspout_conn_close(c);
        return;
    }
    set_step("conn_close under a stream: open");
    pgspout_stream *s = open_stream(c, STOP_SQL, o, 0);
    const pgspout_row *r;
    rc = s ? pgspout_stream_next(s, &r) : PGSPOUT_OK;
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    set_step("conn_close under a stream: conn_close");
    pgspout_conn_close(c);
    if (s) {
        int want = rc == PGSPOUT_OK ? PGSPOUT_STATE_CLOSED : PGSPOUT_STATE_FAILED;
        check_failed(s, rc == PGSPOUT_OK ? PGSPOUT_ESTATE : rc, want);
        set_step("conn_close under a stream: stream_close");
        pgspout_stream_close(s);
    }
}

/* Inside the caller's transaction a stream runs under a savepoint: when it
 * fails (out of memory included) the transaction goes on. */
static void stream_in_transaction(pgspout_conn *c, const pgspout_options *o)
{
    set_step("transaction: BEGIN");
    pgspout_stream *s = open_stream(c, "BEGIN", o, 0);
    if (s == NULL)
        return;
    const pgspout_row *r;
    int rc = pgspout_stream_next(s, &r);
    CHECK_RC(rc, rc == PGSPOUT_DONE);
    pgspout_stream_close(s);

    set_step("transaction: stream");
    s = open_stream(c, "SELECT g FROM generate_series(1, 10) g", o, 0);
    if (s) {
        long expect = 1;
        rc = drain_rows(s, &expect);
        CHECK_RC(rc, rc == PGSPOUT_DONE || is_enomem(rc));
        if (rc == PGSPOUT_DONE)
            CHECK(expect == 11, "all rows: DONE after %ld rows", expect - 1);
        pgspout_stream_close(s);
    }

    set_step("transaction: still usable");
    s = open_stream(c, "SELECT 1", o, 0);
    if (s) {
        long expect = 1;
        rc = drain_rows(s, &expect);
        CHECK_RC(rc, rc == PGSPOUT_DONE || is_enomem(rc));
        if (rc == PGSPOUT_DONE)
            CHECK(expect == 2, "one row: DONE after %ld rows", expect - 1);
        pgspout_stream_close(s);
    }

    set_step("transaction: COMMIT");
    s = open_stream(c, "COMMIT", o, 0);
    if (s) {
        rc = pgspout_stream_next(s, &r);
        CHECK_RC(rc, rc == PGSPOUT_DONE);
        pgspout_stream_close(s);
    }
}

/* Connections that fail: a malformed conninfo and a refused port (no
 * server needed), directly and through the registry. ECONNECT or ENOMEM,
 * with a message. */
static void connect_failures(const pgspout_options *o)
{
    const char *bad[] = {"host=127.0.0.1 port=1 connect_timeout=2 password=secret",
                         "port=5432 password='unterminated"};
    for (int i = 0; i < 2; i++) {
        set_step(i ? "connect failure: malformed conninfo" : "connect failure: refused");
        pgspout_conn *c = NULL;
        int rc = pgspout_connect_opts(bad[i], o, &c);
        CHECK_RC(rc, rc == PGSPOUT_ECONNECT || is_enomem(rc));
        CHECK(c == NULL || !pgspout_conn_ok(c), "a failed connection is not usable");
        const char *why = pgspout_conn_error(c);
        CHECK(c == NULL || cur_persist || *why, "error text: empty");
        CHECK(strstr(why, "secret") == NULL, "no password in \"%s\"", why);
        pgspout_conn_close(c);

        set_step(i ? "registry open failure: malformed conninfo"
                   : "registry open failure: refused");
        uint64_t id = 0;
        char *err = NULL;
        rc = pgspout_registry_open(bad[i], "SELECT 1", 0, NULL, o, &id, &err);
        CHECK_RC(rc, rc == PGSPOUT_ECONNECT || is_enomem(rc));
        CHECK(id == 0, "no id on failure");
        CHECK(err == NULL || strstr(err, "secret") == NULL, "no password in \"%s\"", err);
        pgspout_free(err);
    }
}

/* Streams open and not ended, from the metrics store itself (no allocation,
 * so it can be read while injection is armed). */
static long active_streams(void)
{
    long n = 0;
    for (int i = 0; i < PGS_MAX_LABELS; i++)
        n += (long)atomic_load(&pgs_metrics.labels[i].gauge[G_ACTIVE]);
    return n;
}

/* A registry stream idle past its idle_timeout is reaped (by this call or
 * by the background reaper): gone from the table, its id unknown. */
static void registry_reap(pgspout_options *o)
{
    set_step("registry reap: open");
    uint64_t id = 0;
    char *err = NULL;
    pgspout_options_set(o, "idle_timeout", "1ms");
    int rc = pgspout_registry_open(dsn, STOP_SQL, 0, NULL, o, &id, &err);
    pgspout_options_set(o, "idle_timeout", "60s");
    pgspout_free(err);
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    if (rc != PGSPOUT_OK)
        return;
    tu_sleep_ms(3);
    set_step("registry reap: reap");
    int n = pgspout_registry_reap();
    CHECK(n == 0 || n == 1, "reaped %d", n);
    char *out = NULL;
    rc = pgspout_registry_fetch(id, 0, &out, NULL, NULL, NULL);
    CHECK(rc == PGSPOUT_ENOTFOUND, "fetch after reap: %s", pgspout_code_name(rc));
    rc = pgspout_registry_close(id);
    CHECK(rc == PGSPOUT_ENOTFOUND, "close after reap: %s", pgspout_code_name(rc));
    /* n == 0: the background reaper took it first and may still be closing
     * it (cancel, drain) */
    for (int i = 0; n == 0 && active_streams() != 0 && i < 1000; i++)
        tu_sleep_ms(2);
}

/* --------------------------------------------------------------- session */

/* Everything a session does with injection armed; what is left open (the
 * connection, the options) is checked and closed by session_after. */
static void session(pgspout_conn **conn, pgspout_options **opts)
{
    set_step("options_new");
    pgspout_options *o = *opts = pgspout_options_new(); /* NULL: defaults from here on */
    if (o) {
        const char *kv[][2] = {{"chunk_rows", "4"},
                               {"label", "oom"},
                               {"expected_rows", "20"},
                               {"statement_timeout", "30s"},
                               {"application_name", "oom"}};
        for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
            int rc = pgspout_options_set(o, kv[i][0], kv[i][1]);
            CHECK_RC(rc, rc == PGSPOUT_OK);
        }
    }

    set_step("connect");
    pgspout_conn *c = NULL;
    int rc = pgspout_connect_opts(dsn, o, &c);
    CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    CHECK((rc == PGSPOUT_OK) == (pgspout_conn_ok(c) == 1), "usable iff OK: rc %d, conn_ok %d", rc,
          pgspout_conn_ok(c));
    if (rc != PGSPOUT_OK) {
        CHECK(c == NULL || *pgspout_conn_error(c), "error text: empty");
        pgspout_conn_close(c);
        c = NULL;
    }
    *conn = c;

    if (c) {
        stream_rows(c, o);
        if (o) {
            stream_limited(c, o);
            stream_big(c, o);
            stream_nonblock(c, o);
            stream_memory_limit(c, o);
        }
        stream_sql_error(c, o);
        stream_json_types(c);
        stream_stop(c, o, 1);
        stream_stop(c, o, 0);
        stream_in_transaction(c, o);
        set_step("conn_cancel on an idle connection");
        rc = pgspout_conn_cancel(c);
        CHECK_RC(rc, rc == PGSPOUT_OK || is_enomem(rc));
    }
    conn_close_under_stream(o);
    event_loop_calls(o);
    connect_failures(o);
    metrics_texts();
    registry(o);
    if (o)
        registry_reap(o);
}

/* With injection off: a connection that says it is usable is; close all. */
static void session_after(pgspout_conn *c, pgspout_options *o)
{
    if (c) {
        set_step("after: connection usable or reported unusable");
        /* On this local server only memory can have made it unusable: it
         * says so (when, with one failure, its message could be allocated). */
        const char *why = pgspout_conn_error(c);
        CHECK(pgspout_conn_ok(c) || cur_persist || (*why && !strstr(why, "within")),
              "unusable, with the error \"%s\"", why);
        if (pgspout_conn_ok(c)) {
            char *v = tu_try_scalar(c, "SELECT 42", 0, NULL);
            CHECK(v && strcmp(v, "42") == 0, "usable: SELECT 42 gave %s: %s", v ? v : "NULL",
                  pgspout_conn_error(c));
            free(v);
        }
        pgspout_conn_close(c);
    }
    pgspout_options_free(o);
}

/* Sum of the samples of one metric, every label set (the text was checked
 * with tu_expo_parse in the session; this is only a quick scan). */
static double prom_sum(const char *text, const char *name)
{
    double sum = 0;
    size_t n = strlen(name);
    for (const char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        if (strncmp(l, name, n) != 0 || (l[n] != '{' && l[n] != ' '))
            continue;
        const char *v = l[n] == '{' ? strchr(l, '}') : l + n;
        CHECK(v != NULL, "sample line: %.80s", l);
        sum += strtod(v + 1, NULL);
    }
    return sum;
}

/* Process-wide state after a session: registry empty, metrics consistent;
 * then the metrics are zeroed for the next one. */
static void check_globals(void)
{
    set_step("after: registry empty");
    char *list = pgspout_registry_list_json();
    CHECK(list && strcmp(list, "[]") == 0, "empty: list %s", list ? list : "NULL");
    pgspout_free(list);

    set_step("after: metrics add up");
    char *p = pgspout_metrics_prometheus();
    CHECK(p != NULL, "exposition: NULL");
    double started = prom_sum(p, "pgspout_streams_started_total"), ended = 0;
    const char *zero[] = {"pgspout_active_streams", "pgspout_paused_streams",
                          "pgspout_buffered_bytes"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
        double v = prom_sum(p, zero[i]);
        CHECK(v == 0, "gauge back to 0: %s = %g", zero[i], v);
    }
    const char *ends[] = {"pgspout_streams_completed_total", "pgspout_streams_failed_total",
                          "pgspout_streams_cancelled_total", "pgspout_streams_limited_total"};
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++)
        ended += prom_sum(p, ends[i]);
    CHECK(started == ended, "each stream ends once: started %g, ended %g", started, ended);
    pgspout_free(p);
    pgspout_metrics_reset();
}

/* Where the faults fired: step name and how many sessions. */
static struct {
    const char *step;
    int n;
} where[64];

static void note_fired(const char *at)
{
    int i = 0;
    while (i < 63 && where[i].step && strcmp(where[i].step, at) != 0)
        i++;
    where[i].step = at;
    where[i].n++;
}

static long run(long n, int persist, long *calls)
{
    cur_n = n;
    cur_persist = persist;
    pgspout_conn *c = NULL;
    pgspout_options *o = NULL;
    fired_in = NULL;
    pgs_fault_arm(n, persist);
    session(&c, &o);
    set_step("end of session"); /* notes where the fault fired */
    if (calls)
        *calls = pgs_fault_calls();
    long fired = pgs_fault_failures();
    if (fired)
        note_fired(fired_in);
    pgs_fault_arm(0, 0);
    session_after(c, o);
    check_globals();
    if (__lsan_do_recoverable_leak_check) {
        set_step("after: leak check");
        CHECK(__lsan_do_recoverable_leak_check() == 0, "no leak (report above)");
    }
    return fired;
}

int main(void)
{
    int gate = tu_db_gate("test_alloc_fail");
    if (gate >= 0)
        return gate;
    dsn = tu_dsn();
    verbose = getenv("PGSPOUT_OOM_VERBOSE") && atoi(getenv("PGSPOUT_OOM_VERBOSE"));
    setvbuf(stdout, NULL, _IOLBF, 0);
    pgspout_metrics_reset();

    const char *one = getenv("PGSPOUT_OOM_N");
    if (one && *one) {
        const char *pe = getenv("PGSPOUT_OOM_PERSIST");
        long fired = run(atol(one), pe && atoi(pe), NULL);
        printf("test_alloc_fail: N=%s: %ld calls failed, invariants hold\n", one, fired);
        return 0;
    }

    long k = 0;
    CHECK(run(0, 0, &k) == 0 && k > 0, "counting run: %ld calls", k);
    printf("test_alloc_fail: a session makes K=%ld counted allocations; leak check after every "
           "session: %s\n",
           k, __lsan_do_recoverable_leak_check ? "yes (LeakSanitizer)" : "no (not an ASan build)");
    for (int persist = 0; persist <= 1; persist++) {
        long covered = 0, quiet = 0, n;
        for (n = 1;; n++) {
            CHECK(n <= 4 * k + 100, "the fault stops firing: N=%ld for K=%ld", n, k);
            if (run(n, persist, NULL) > 0)
                covered++;
            else if (n > k)
                break;
            else
                quiet++; /* this session took a path with fewer calls */
        }
        printf("test_alloc_fail: %s: N=1..%ld, the fault fired in %ld sessions (%ld did not "
               "reach call N), every invariant held\n",
               persist ? "every call from N on fails" : "the N-th call fails", n - 1, covered,
               quiet);
        for (int i = 0; where[i].step; i++)
            printf("  %4d  %s\n", where[i].n, where[i].step);
        memset(where, 0, sizeof where);
    }
    return 0;
}
