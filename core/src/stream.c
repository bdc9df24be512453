/* stream.c - the stream engine.
 *
 * One pump (fill) moves rows from the libpq socket into a bounded buffer, the
 * current chunk; consumers take rows from it (next, next_chunk). Blocking,
 * non-blocking and paused consumption are ways to drive the same pump. Limits
 * are checked in the pump once per chunk or per wait, never per row, and
 * counters are published per chunk. A wait polls the libpq socket and the
 * stream's wake-up descriptor, so pause/resume/cancel from other threads take
 * effect at once.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

/* How long a drain after a cancel, or a utility statement between streams,
 * may take before the connection is given up as unusable. */
#define DRAIN_NS (5 * PGS_NS_PER_S)
/* Adaptive chunking: votes needed and minimum time between two changes. */
#define ADAPT_VOTES       3
#define ADAPT_INTERVAL_NS (250 * PGS_NS_PER_MS)
/* A wait on the socket shorter than this found rows already there. */
#define READY_NS (20 * PGS_NS_PER_MS / 1000)

enum { RETRY = 100 }; /* internal: re-run the control checks */

/* ------------------------------------------------------------- log hook */

static pgspout_log_fn log_fn;
static void *log_ud;

void pgspout_set_log_hook(pgspout_log_fn fn, void *userdata)
{
    log_fn = fn;
    log_ud = userdata;
}

void pgs_log(int level, const char *fmt, ...)
{
    if (log_fn == NULL)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_ud);
}

/* --------------------------------------------------------------- errors */

static void set_error(pgspout_stream *s, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(pgspout_stream *s, const char *sqlstate, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pgs_set_message(&s->err, fmt, ap);
    va_end(ap);
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", sqlstate ? sqlstate : "");
}

/* "primary message (SQLSTATE 22012)", plus detail, hint and position. */
static void set_sql_error(pgspout_stream *s, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
    const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
    if (primary == NULL) {
        primary = PQresultErrorMessage(res);
        if (primary == NULL || !*primary)
            primary = s->conn ? PQerrorMessage(s->conn->pg) : "server error";
    }
    set_error(s, state, "%s (SQLSTATE %s)%s%s%s%s%s%s", primary, state ? state : "none",
              pos ? " at character " : "", pos ? pos : "", detail ? "; detail: " : "",
              detail ? detail : "", hint ? "; hint: " : "", hint ? hint : "");
    pgs_metrics_sqlstate(state);
}

/* ------------------------------------------------------------ the buffer */

/* Forget the rows of the current chunk (the arena is reused). */
static void release_chunk(pgspout_stream *s)
{
    int pos = LOAD(s->pos);
    ADD(s->delivered_base, (uint64_t)pos);
    uint64_t held = LOAD(s->buffered_bytes);
    /* only a chunk that chunk_done published is in the gauge: a fill that
     * failed half-way (out of memory, connection lost) never added it */
    if (held && s->metrics && LOAD(s->nrows_pub))
        pgs_metrics_buffered_delta(s->metrics, -(int64_t)held);
    STORE(s->buffered_bytes, 0);
    s->arena_used = 0;
    s->nrows = 0;
    STORE(s->nrows_pub, 0);
    STORE(s->pos, 0);
}

static void drop_carry(pgspout_stream *s)
{
    PQclear(s->carry);
    s->carry = NULL;
}

/* Bytes received and rows filtered since the last flush, to the metrics. */
static void flush_received(pgspout_stream *s)
{
    uint64_t bytes = LOAD(s->bytes_received), filtered = LOAD(s->rows_filtered);
    if (s->metrics)
        pgs_metrics_received(s->metrics, bytes - s->rate_bytes_seen, filtered - s->filtered_seen);
    s->rate_bytes_seen = bytes;
    s->filtered_seen = filtered;
}

/* Rows delivered so far, flushed to the process-wide counter. */
static void flush_delivered(pgspout_stream *s)
{
    uint64_t total = LOAD(s->delivered_base) + (uint64_t)LOAD(s->pos);
    if (s->metrics && total > s->metrics_delivered)
        pgs_metrics_delivered(s->metrics, total - s->metrics_delivered);
    s->metrics_delivered = total;
}

/* p grown to hold need elements (doubling); NULL if realloc failed. */
static void *grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return p;
    int n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(p, (size_t)n * elem);
    if (q != NULL)
        *cap = n;
    return q;
}

static int set_meta(pgspout_stream *s, const PGresult *res)
{
    s->meta = PQcopyResult(res, PG_COPYRES_ATTRS);
    if (s->meta == NULL)
        return -1;
    int n = s->ncols = PQnfields(s->meta);
    if (n == 0)
        return 0;
    s->lens = calloc((size_t)n, sizeof *s->lens);
    if (s->lens == NULL)
        return -1;
    s->json_kind = calloc((size_t)n, sizeof *s->json_kind);
    s->json_key = calloc((size_t)n, sizeof *s->json_key);
    s->json_key_len = calloc((size_t)n, sizeof *s->json_key_len);
    if (!s->json_kind || !s->json_key || !s->json_key_len)
        return -1;
    for (int c = 0; c < n; c++) {
        s->json_kind[c] = pgs_json_kind(PQftype(s->meta, c));
        pgs_buf key = PGS_BUF_INIT;
        const char *name = PQfname(s->meta, c);
        if (c > 0)
            pgs_buf_putc(&key, ',');
        pgs_json_string(&key, name, strlen(name));
        pgs_buf_putc(&key, ':');
        s->json_key_len[c] = key.len;
        s->json_key[c] = pgs_buf_steal(&key);
        if (s->json_key[c] == NULL)
            return -1;
    }
    s->json_single =
        n == 1 && (s->json_kind[0] == PGS_JSON_RAW || s->json_kind[0] == PGS_JSON_RAW_LINES);
    return 0;
}

/* ---------------------------------------------------------------- ending */

/* End the stream: publish the end state once, close the books, and let go of
 * the connection when the server side is finished (or broken). */
static void stream_end(pgspout_stream *s, int state, int code)
{
    if (LOAD(s->ended))
        return;
    int64_t now = pgs_now_ns();
    pthread_mutex_lock(&s->ctl);
    if (atomic_exchange(&s->pause_req, 0)) {
        int64_t since = LOAD(s->pause_started);
        ADD(s->paused_ns, now - (since ? since : now));
        if (s->metrics)
            pgs_metrics_resume(s->metrics, (double)(now - (since ? since : now)) / 1e9);
    }
    STORE(s->t_end, now);
    s->result_code = code;
    atomic_store(&s->ended, state);
    if (s->conn) {
        if (s->conn->active == s)
            s->conn->active = NULL;
        s->conn = NULL;
    }
    pthread_mutex_unlock(&s->ctl);

    flush_delivered(s);
    flush_received(s);
    if (s->metrics) {
        /* every started stream ends in exactly one of these */
        int end = PGS_END_FAILED;
        if (state == PGSPOUT_STATE_DONE)
            end = PGS_END_COMPLETED;
        else if (state == PGSPOUT_STATE_CANCELLED || state == PGSPOUT_STATE_CLOSED)
            end = PGS_END_CANCELLED;
        else if (s->limit_reason >= 0)
            end = PGS_END_LIMITED;
        pgs_metrics_stream_ended(s->metrics, end, s->limit_reason, (double)(now - s->t_open) / 1e9);
    }
    if (s->opt.progress) {
        pgspout_stats st = PGSPOUT_STATS_INIT;
        pgspout_stream_stats(s, &st);
        s->opt.progress(&st, s->opt.progress_ud);
    }
}

enum { DRAINED_ROWS = 1, DRAINED_ERROR = 2 };

/* Read and discard what is left of the current query. A mask of what it
 * discarded (DRAINED_*), or -1 if the connection could not be brought back
 * to idle before the deadline. */
static int drain(PGconn *pg, int64_t deadline)
{
    int saw = 0;
    for (;;) {
        while (!PQisBusy(pg)) {
            PGresult *r = PQgetResult(pg);
            if (r == NULL)
                return saw;
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_SINGLE_TUPLE)
                saw |= DRAINED_ROWS;
            else if (st == PGRES_FATAL_ERROR)
                saw |= DRAINED_ERROR;
            PQclear(r);
            if (st == PGRES_COPY_IN || st == PGRES_COPY_BOTH)
                return -1;
            if (st == PGRES_COPY_OUT) {
                char *buf;
                int n;
                while ((n = PQgetCopyData(pg, &buf, 0)) > 0)
                    PQfreemem(buf);
                if (n == -2)
                    return -1;
            }
        }
        if (!PQconsumeInput(pg))
            return -1;
        if (!PQisBusy(pg))
            continue;
        if (pgs_wait(PQsocket(pg), -1, deadline) <= 0)
            return -1;
    }
}

/* Send what libpq has queued, waiting at most until deadline (0 = none).
 * PGSPOUT_OK, ETIMEOUT or ECONN. */
static int flush_out(PGconn *pg, int64_t deadline)
{
    for (;;) {
        int r = PQflush(pg);
        if (r == 0)
            return PGSPOUT_OK;
        if (r < 0)
            return PGSPOUT_ECONN;
        int w = pgs_wait_rw(PQsocket(pg), 1, -1, deadline);
        if (w == 0)
            return PGSPOUT_ETIMEOUT;
        if (w < 0)
            return PGSPOUT_ECONN;
        if ((w & PGS_WAIT_SOCKET) && !PQconsumeInput(pg))
            return PGSPOUT_ECONN;
    }
}

/* Run a utility statement (SET, SAVEPOINT...) with a deadline; the server's
 * error goes on errs when given. PGSPOUT_OK, ESQL, ETIMEOUT or ECONN; on the
 * last two the connection is marked broken (it may be mid-statement). */
static int exec_utility(pgspout_conn *c, const char *sql, int64_t deadline, pgspout_stream *errs)
{
    PGconn *pg = c->pg;
    int rc = PQsendQuery(pg, sql) ? flush_out(pg, deadline) : PGSPOUT_ECONN;
    int failed = 0;
    while (rc == PGSPOUT_OK) {
        if (!PQisBusy(pg)) {
            PGresult *r = PQgetResult(pg);
            if (r == NULL)
                return failed ? PGSPOUT_ESQL : PGSPOUT_OK;
            if (PQresultStatus(r) != PGRES_COMMAND_OK && !failed++ && errs)
                set_sql_error(errs, r);
            PQclear(r);
            continue;
        }
        if (!PQconsumeInput(pg))
            rc = PGSPOUT_ECONN;
        else if (PQisBusy(pg)) {
            int w = pgs_wait(PQsocket(pg), -1, deadline);
            rc = w == 0 ? PGSPOUT_ETIMEOUT : w < 0 ? PGSPOUT_ECONN : PGSPOUT_OK;
        }
    }
    c->broken = 1;
    pgs_conn_set_error(c, "connection unusable after %s: %s", sql,
                       rc == PGSPOUT_ETIMEOUT ? "timed out" : PQerrorMessage(pg));
    return rc;
}

/* Inside the caller's transaction block a stream runs under a savepoint, so
 * that cancelling it (cancel, close, a limit) does not abort the caller's
 * transaction: rollback undoes just the stream's statement. */
#define SAVEPOINT_NAME "pgspout_stream_sp"

static void savepoint_end(pgspout_stream *s, int rollback)
{
    pgspout_conn *c = s->conn;
    if (!s->savepoint || c == NULL || c->broken)
        return;
    s->savepoint = 0;
    if (PQtransactionStatus(c->pg) == PQTRANS_INERROR && !rollback)
        return; /* the server's own error: the caller's transaction is aborted, as usual */
    exec_utility(c,
                 rollback ? "ROLLBACK TO SAVEPOINT " SAVEPOINT_NAME
                            "; RELEASE SAVEPOINT " SAVEPOINT_NAME
                          : "RELEASE SAVEPOINT " SAVEPOINT_NAME,
                 pgs_now_ns() + DRAIN_NS, NULL);
}

/* Stop the server side now: send a cancel unless the server is finished,
 * then drain. A cancel the server did not take in time (a silent network)
 * could still land on a later query, so the connection is then marked
 * broken instead; so it is when the drain fails. Returns what the drain
 * discarded (DRAINED_*), 0 if the server had already finished. */
static int stop_server(pgspout_stream *s)
{
    if (s->conn == NULL || s->server_done)
        return 0;
    pgspout_conn *c = s->conn;
    s->server_done = 1;
    if (!pgs_conn_owned(c)) /* a fork child: the query is the parent's */
        return 0;
    int sent = pgs_conn_send_cancel(c, PGS_CANCEL_WAIT_MS);
    if (sent != 0) {
        c->broken = 1;
        if (sent == -2)
            pgs_conn_set_error(c, "out of memory while cancelling the query; "
                                  "connection closed for safety");
        else
            pgs_conn_set_error(c,
                               "the server did not take a cancel request within %d ms; "
                               "connection closed for safety",
                               PGS_CANCEL_WAIT_MS);
        return DRAINED_ROWS | DRAINED_ERROR;
    }
    int saw = drain(c->pg, pgs_now_ns() + DRAIN_NS);
    if (saw < 0) {
        c->broken = 1;
        pgs_conn_set_error(c, "connection lost while stopping a stream: %s", PQerrorMessage(c->pg));
        return DRAINED_ROWS | DRAINED_ERROR;
    }
    savepoint_end(s, saw != 0);
    return saw;
}

/* Fail the stream with code: stop the server, end, return code. */
static int fail(pgspout_stream *s, int code, int state, int limit_reason)
{
    if (s->metrics && code == PGSPOUT_EMEMORY)
        pgs_metrics_memory_limit(s->metrics);
    s->limit_reason = limit_reason;
    stop_server(s);
    release_chunk(s);
    drop_carry(s);
    stream_end(s, state, code);
    return code;
}

static int fail_conn(pgspout_stream *s)
{
    pgspout_conn *c = s->conn;
    set_error(s, "08006", "connection lost: %s", c ? PQerrorMessage(c->pg) : "closed");
    if (c)
        c->broken = 1;
    s->server_done = 1;
    release_chunk(s);
    stream_end(s, PGSPOUT_STATE_FAILED, PGSPOUT_ECONN);
    return PGSPOUT_ECONN;
}

/* ------------------------------------------------------------- the pump */

/* The event-loop descriptor (pgspout_stream_socket) is an epoll set holding
 * the wake-up eventfd always and the server socket only while the stream
 * wants to read: paused or throttled, data waiting on the socket must not
 * make the loop spin. Owner thread. */
static void watch_socket(pgspout_stream *s, int on)
{
    if (s->epfd < 0 || s->conn == NULL || on == s->sock_watched)
        return;
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(s->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, PQsocket(s->conn->pg), &ev) == 0)
        s->sock_watched = on;
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    if (a == 0)
        return b;
    if (b == 0)
        return a;
    return a < b ? a : b;
}

static void do_resume(pgspout_stream *s, int64_t now)
{
    if (atomic_exchange(&s->pause_req, 0)) {
        int64_t since = LOAD(s->pause_started);
        int64_t d = now - (since ? since : now);
        ADD(s->paused_ns, d);
        if (s->metrics)
            pgs_metrics_resume(s->metrics, (double)d / 1e9);
    }
}

/* Cancel, deadline, pause and throttle, checked whenever the pump is about to
 * read or wait. 0 = go on reading; RETRY = re-check; else a code to return. */
static int control(pgspout_stream *s, int nonblock)
{
    if (LOAD(s->cancel_req)) {
        set_error(s, "57014", "stream cancelled by the caller after %llu rows",
                  (unsigned long long)(LOAD(s->delivered_base) + (uint64_t)LOAD(s->pos)));
        return fail(s, PGSPOUT_ECANCELLED, PGSPOUT_STATE_CANCELLED, -1);
    }
    int64_t now = pgs_now_ns();
    if (s->deadline && now >= s->deadline) {
        set_error(s, "", "timeout of %lld ms exceeded after %.3f s and %llu rows",
                  (long long)s->opt.timeout_ms, (double)(now - s->t_open) / 1e9,
                  (unsigned long long)(LOAD(s->delivered_base) + (uint64_t)LOAD(s->pos)));
        return fail(s, PGSPOUT_ETIMEOUT, PGSPOUT_STATE_FAILED, PGS_LIMIT_TIMEOUT);
    }
    if (LOAD(s->pause_req)) {
        int64_t since = LOAD(s->pause_started);
        int64_t pdl = s->opt.pause_timeout_ms
                          ? (since ? since : now) + s->opt.pause_timeout_ms * PGS_NS_PER_MS
                          : 0;
        if (pdl && now >= pdl) {
            if (s->metrics)
                pgs_metrics_pause_timeout(s->metrics);
            if (s->opt.on_pause_timeout_cancel) {
                set_error(s, "", "paused for %.3f s, longer than pause_timeout of %lld ms",
                          (double)(now - since) / 1e9, (long long)s->opt.pause_timeout_ms);
                return fail(s, PGSPOUT_EPAUSE_TIMEOUT, PGSPOUT_STATE_FAILED,
                            PGS_LIMIT_PAUSE_TIMEOUT);
            }
            pgs_log(1, "stream %s: pause_timeout of %lld ms reached, resuming", s->opt.label,
                    (long long)s->opt.pause_timeout_ms);
            do_resume(s, now);
            return RETRY;
        }
        s->wait_until = min_deadline(pdl, s->deadline);
        if (nonblock) {
            watch_socket(s, 0);
            return PGSPOUT_PAUSED;
        }
        pgs_wait(-1, s->wake.fd, s->wait_until);
        pgs_wake_drain(&s->wake);
        return RETRY;
    }
    if (s->throttle_until > now) {
        s->wait_until = min_deadline(s->throttle_until, s->deadline);
        if (nonblock) {
            watch_socket(s, 0);
            return PGSPOUT_AGAIN;
        }
        pgs_wait(-1, s->wake.fd, s->wait_until);
        pgs_wake_drain(&s->wake);
        return RETRY;
    }
    s->wait_until = s->deadline;
    return 0;
}

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)
enum { ADD_FULL = 1 }; /* add_result: the chunk is full, res kept as carry */

/* Copy the rows of res (from the carry position) into the arena, applying the
 * filter and max_rows. Returns 0 when every row was taken (res is cleared),
 * ADD_FULL when the arena filled first (res becomes the carry), or
 * PGSPOUT_ENOMEM / PGSPOUT_EMEMORY (res is cleared, the error set). */
static int add_result(pgspout_stream *s, PGresult *res, uint64_t *kept_total)
{
    int n = PQntuples(res), ncols = s->ncols, rc = 0;
    int i = res == s->carry ? s->carry_idx : 0;
    s->carry = NULL;
    pgspout_row *rows = grow(s->rows, &s->cap, s->nrows + (n - i), sizeof *rows);
    if (rows == NULL) {
        PQclear(res);
        set_error(s, "", "out of memory");
        return PGSPOUT_ENOMEM;
    }
    s->rows = rows;
    const size_t head = ALIGN8((size_t)ncols * sizeof(pgs_field));
    uint64_t bytes = 0, received = 0, filtered = 0;
    for (; i < n; i++) {
        size_t need = head;
        for (int c = 0; c < ncols; c++) {
            int l = PQgetlength(res, i, c);
            s->lens[c] = l;
            need += (size_t)l + 1;
        }
        need = ALIGN8(need);
        if (s->arena_used + need > s->arena_cap) {
            if (s->nrows > 0) { /* chunk full: the rest waits for the next one */
                s->carry = res;
                s->carry_idx = i;
                if (s->arena_cap < s->target_bytes)
                    s->grow_arena = 1;
                rc = ADD_FULL;
                goto out;
            }
            if (need > s->fail_bytes) {
                set_error(s, "53200",
                          "max_memory of %lld bytes exceeded: a row needs %zu bytes "
                          "(memory_fail %.2f)",
                          (long long)s->opt.max_memory, need, s->opt.memory_fail);
                PQclear(res);
                rc = PGSPOUT_EMEMORY;
                goto out;
            }
            char *a = realloc(s->arena, need); /* empty arena: nothing points into it */
            if (a == NULL) {
                set_error(s, "", "out of memory");
                PQclear(res);
                rc = PGSPOUT_ENOMEM;
                goto out;
            }
            s->arena = a;
            s->arena_cap = need;
            if (need > s->warn_bytes && !s->warned) {
                s->warned = 1;
                if (s->metrics)
                    pgs_metrics_memory_warning(s->metrics);
                pgs_log(
                    2,
                    "stream %s: a row of %zu bytes is over memory_warn (%.2f of max_memory %lld)",
                    s->opt.label, need, s->opt.memory_warn, (long long)s->opt.max_memory);
            }
        }
        char *base = s->arena + s->arena_used;
        pgs_field *f = (pgs_field *)(void *)base;
        uint32_t off = (uint32_t)head;
        for (int c = 0; c < ncols; c++) {
            int l = s->lens[c];
            f[c].off = off;
            f[c].len = l == 0 && PQgetisnull(res, i, c) ? -1 : l;
            memcpy(base + off, PQgetvalue(res, i, c), (size_t)l);
            base[off + (uint32_t)l] = '\0';
            off += (uint32_t)l + 1;
            bytes += (uint64_t)l;
        }
        received++;
        pgspout_row *r = &s->rows[s->nrows];
        r->data = base;
        r->f = f;
        r->ncols = ncols;
        if (s->opt.filter && !s->opt.filter(r, s->opt.filter_ud)) {
            filtered++; /* its arena space is reused by the next row */
            continue;
        }
        s->arena_used += need;
        s->nrows++;
        if (s->opt.max_rows && ++*kept_total >= (uint64_t)s->opt.max_rows) {
            i = n;
            break;
        }
    }
    PQclear(res);
out:
    ADD(s->rows_received, received);
    ADD(s->rows_filtered, filtered);
    ADD(s->bytes_received, bytes);
    STORE(s->buffered_bytes, s->arena_used);
    if (s->arena_used > LOAD(s->peak_buffered))
        STORE(s->peak_buffered, s->arena_used);
    return rc;
}

/* The chunk was read: counters, metrics, throttle, adaptive size, progress. */
static void chunk_done(pgspout_stream *s, int64_t fill_start, int waited)
{
    int64_t now = pgs_now_ns();
    uint64_t rows = (uint64_t)s->nrows;
    STORE(s->nrows_pub, s->nrows);
    ADD(s->chunks, 1);
    if (LOAD(s->t_first_row) == 0) {
        STORE(s->t_first_row, now);
        if (s->metrics)
            pgs_metrics_first_row(s->metrics, (double)(now - s->t_open) / 1e9);
    }
    if (s->metrics) {
        pgs_metrics_buffered_delta(s->metrics, (int64_t)LOAD(s->buffered_bytes));
        pgs_metrics_chunk(s->metrics, rows, LOAD(s->buffered_bytes));
    }
    flush_received(s);
    if (s->opt.max_rate > 0) {
        int64_t from = s->throttle_until > fill_start ? s->throttle_until : fill_start;
        s->throttle_until = from + (int64_t)((double)rows * 1e9 / s->opt.max_rate);
    }
    /* rows/s and bytes/s over windows of about a second */
    int64_t rt = LOAD(s->rate_t);
    if (rt == 0) {
        STORE(s->rate_t, s->t_open);
        rt = s->t_open;
    }
    if (now - rt >= PGS_NS_PER_S / 2) {
        double dt = (double)(now - rt) / 1e9;
        uint64_t r = LOAD(s->rows_received), b = LOAD(s->bytes_received);
        STORE(s->rows_per_sec_x1000, (uint64_t)((double)(r - LOAD(s->rate_rows)) * 1000 / dt));
        STORE(s->bytes_per_sec_x1000, (uint64_t)((double)(b - LOAD(s->rate_bytes)) * 1000 / dt));
        STORE(s->rate_rows, r);
        STORE(s->rate_bytes, b);
        STORE(s->rate_t, now);
    }
    /* Adaptive chunking: the consumer keeps up when it came back for more
     * faster than the server filled the chunk (we waited on the socket):
     * grow; it lags when a full chunk was waiting for it: shrink. */
    if (s->opt.adaptive_chunking) {
        int vote = waited ? 1 : (rows >= (uint64_t)LOAD(s->chunk_target) ? -1 : 0);
        if (vote == 0 || (vote > 0) != (s->adapt_votes > 0))
            s->adapt_votes = vote;
        else
            s->adapt_votes += vote;
        if ((s->adapt_votes >= ADAPT_VOTES || s->adapt_votes <= -ADAPT_VOTES) &&
            now - s->adapt_last >= ADAPT_INTERVAL_NS) {
            int64_t cur = LOAD(s->chunk_target);
            int64_t t = s->adapt_votes > 0 ? cur * 2 : cur / 2;
            if (t < s->opt.chunk_rows_min)
                t = s->opt.chunk_rows_min;
            if (t > s->opt.chunk_rows_max)
                t = s->opt.chunk_rows_max;
            STORE(s->chunk_target, t);
            s->adapt_votes = 0;
            s->adapt_last = now;
            if (s->metrics)
                pgs_metrics_chunk_rows_gauge(s->metrics, t);
        }
    }
    if (s->opt.progress) {
        uint64_t total = LOAD(s->delivered_base) + rows;
        int due = (s->opt.progress_rows && total >= s->progress_next_rows) ||
                  (s->opt.progress_interval_ms && now >= s->progress_next_t);
        if (due) {
            pgspout_stats st = PGSPOUT_STATS_INIT;
            pgspout_stream_stats(s, &st);
            s->opt.progress(&st, s->opt.progress_ud);
            s->progress_next_rows = total + (uint64_t)s->opt.progress_rows;
            s->progress_next_t = now + s->opt.progress_interval_ms * PGS_NS_PER_MS;
        }
    }
}

/* Apply an end found while rows were still buffered, now that they are out. */
static int finish_pending(pgspout_stream *s)
{
    int state = s->pend_state, code = s->pend_code;
    s->pend_state = 0;
    /* the server's "canceling statement" after a cancel the caller asked for
     * (on the stream or on its connection) is a cancel, not a SQL error */
    int asked =
        LOAD(s->cancel_req) || (s->conn && atomic_load(&s->conn->cancel_gen) != s->cancel_gen);
    if (asked && (code != PGSPOUT_ESQL || strcmp(s->sqlstate, "57014") == 0)) {
        set_error(s, "57014", "stream cancelled by the caller after %llu rows",
                  (unsigned long long)(LOAD(s->delivered_base) + (uint64_t)LOAD(s->pos)));
        s->limit_reason = -1;
        state = PGSPOUT_STATE_CANCELLED;
        code = PGSPOUT_ECANCELLED;
    }
    stream_end(s, state, code);
    return code;
}

/* Read one chunk. Returns PGSPOUT_OK with rows in the buffer, DONE, AGAIN,
 * PAUSED or a negative code (the stream has then ended). */
static int fill(pgspout_stream *s, int nonblock)
{
    if (LOAD(s->ended))
        return s->result_code;
    release_chunk(s);
    if (s->pend_state)
        return finish_pending(s);
    if (s->server_done && s->carry == NULL) { /* everything was read already */
        s->pend_state = PGSPOUT_STATE_DONE;
        s->pend_code = PGSPOUT_DONE;
        return finish_pending(s);
    }
    if (!pgs_conn_owned(s->conn)) {
        set_error(s, "",
                  "the connection belongs to the process that opened it (this is a fork "
                  "child); open a new connection here");
        s->server_done = 1;
        release_chunk(s);
        stream_end(s, PGSPOUT_STATE_FAILED, PGSPOUT_ECONN);
        return PGSPOUT_ECONN;
    }
    PGconn *pg = s->conn->pg;
    int64_t fill_start = pgs_now_ns();
    if (nonblock) /* consumed before the checks: a later signal stays pending */
        pgs_wake_drain(&s->wake);
    int waited = 0;
    uint64_t kept_total = LOAD(s->delivered_base);
    int64_t target = LOAD(s->chunk_target);
    if (s->opt.max_rate > 0) { /* small chunks keep a throttled stream smooth */
        int64_t r = (int64_t)(s->opt.max_rate / 10);
        if (r < target)
            target = r < 1 ? 1 : r;
    }
    if (s->arena_cap == 0 || s->grow_arena) { /* the arena is empty here */
        size_t cap = s->arena_cap ? s->arena_cap * 2 : 65536;
        if (cap > s->target_bytes)
            cap = s->target_bytes;
        if (cap > s->arena_cap) {
            char *a = realloc(s->arena, cap);
            if (a == NULL) {
                set_error(s, "", "out of memory");
                return fail(s, PGSPOUT_ENOMEM, PGSPOUT_STATE_FAILED, -1);
            }
            s->arena = a;
            s->arena_cap = cap;
        }
        s->grow_arena = 0;
    }

    for (;;) {
        int rc = control(s, nonblock);
        if (rc == RETRY)
            continue;
        if (rc != 0)
            return rc;
        while (s->nrows < target && s->arena_used < s->target_bytes) {
            if (s->carry) {
                int ar = add_result(s, s->carry, &kept_total);
                if (ar == ADD_FULL)
                    break;
                if (ar < 0)
                    return fail(s, ar, PGSPOUT_STATE_FAILED,
                                ar == PGSPOUT_EMEMORY ? PGS_LIMIT_MEMORY : -1);
                continue;
            }
            if (PQisBusy(pg)) {
                /* No whole message is buffered. Reads never block, but a read
                 * that finds the socket empty is a wasted system call: once
                 * one has, the stream hands over the rows it has, or waits for
                 * readiness and then reads once (the pattern of libpq's own
                 * blocking PQgetResult). When the socket was readable at
                 * once, rows are piling up and it reads ahead again. */
                if (LOAD(s->pause_req) || LOAD(s->cancel_req))
                    break;
                if (!s->sock_dry || nonblock) {
                    if (!PQconsumeInput(pg))
                        return fail_conn(s);
                    if (!PQisBusy(pg))
                        continue;
                    s->sock_dry = 1;
                    if (nonblock && s->nrows == 0) {
                        watch_socket(s, 1);
                        return PGSPOUT_AGAIN;
                    }
                }
                if (s->nrows > 0)
                    break;
                int64_t t0 = pgs_now_ns();
                int w = pgs_wait(PQsocket(pg), s->wake.fd, s->deadline);
                if (w < 0)
                    return fail_conn(s);
                if (w & PGS_WAIT_WAKE)
                    pgs_wake_drain(&s->wake);
                int blocked = pgs_now_ns() - t0 >= READY_NS;
                waited |= blocked;
                if (w & PGS_WAIT_SOCKET) {
                    if (!PQconsumeInput(pg))
                        return fail_conn(s);
                    s->sock_dry = blocked;
                }
                break; /* back to the control checks */
            }
            PGresult *res = PQgetResult(pg);
            if (res == NULL) {
                s->server_done = 1;
                savepoint_end(s, 0);
                break;
            }
            switch (PQresultStatus(res)) {
            case PGRES_SINGLE_TUPLE:
#ifdef PGSPOUT_HAVE_CHUNKED_ROWS
            case PGRES_TUPLES_CHUNK:
#endif
                if (s->meta == NULL && set_meta(s, res) != 0) {
                    PQclear(res);
                    set_error(s, "", "out of memory");
                    return fail(s, PGSPOUT_ENOMEM, PGSPOUT_STATE_FAILED, -1);
                }
                int ar = add_result(s, res, &kept_total);
                if (ar < 0)
                    return fail(s, ar, PGSPOUT_STATE_FAILED,
                                ar == PGSPOUT_EMEMORY ? PGS_LIMIT_MEMORY : -1);
                break;
            case PGRES_TUPLES_OK:
            case PGRES_COMMAND_OK:
            case PGRES_EMPTY_QUERY:
                if (s->meta == NULL && set_meta(s, res) != 0) {
                    PQclear(res);
                    set_error(s, "", "out of memory");
                    return fail(s, PGSPOUT_ENOMEM, PGSPOUT_STATE_FAILED, -1);
                }
                PQclear(res);
                break;
            case PGRES_COPY_OUT:
            case PGRES_COPY_IN:
            case PGRES_COPY_BOTH:
                if (PQresultStatus(res) == PGRES_COPY_IN)
                    PQputCopyEnd(pg, "COPY FROM STDIN is not supported by pgspout");
                PQclear(res);
                set_error(s, "0A000", "COPY is not supported in a stream; use SELECT");
                s->pend_state = PGSPOUT_STATE_FAILED;
                s->pend_code = PGSPOUT_ESQL;
                if (drain(pg, pgs_now_ns() + DRAIN_NS) < 0)
                    s->conn->broken = 1;
                s->server_done = 1;
                savepoint_end(s, 0);
                break;
            default: /* PGRES_FATAL_ERROR, PGRES_BAD_RESPONSE, ... */
                set_sql_error(s, res);
                PQclear(res);
                s->pend_state = PGSPOUT_STATE_FAILED;
                s->pend_code = PGSPOUT_ESQL;
                if (drain(pg, pgs_now_ns() + DRAIN_NS) < 0 || PQstatus(pg) != CONNECTION_OK) {
                    /* e.g. 57P01 from pg_terminate_backend: the connection is
                     * gone, which is what the caller must act on; the
                     * SQLSTATE stays readable */
                    s->conn->broken = 1;
                    s->pend_code = PGSPOUT_ECONN;
                }
                s->server_done = 1;
                savepoint_end(s, 0);
                break;
            }
            if (s->server_done || s->carry)
                break;
            if (s->opt.max_rows && kept_total >= (uint64_t)s->opt.max_rows) {
                /* limited only if the server had more to send */
                int more = stop_server(s) != 0;
                s->limit_reason = more ? PGS_LIMIT_ROWS : -1;
                s->pend_state = more ? PGSPOUT_STATE_LIMITED : PGSPOUT_STATE_DONE;
                s->pend_code = PGSPOUT_DONE;
                break;
            }
        }
        if (s->nrows > 0) {
            chunk_done(s, fill_start, waited);
            return PGSPOUT_OK;
        }
        if (s->pend_state)
            return finish_pending(s);
        if (s->server_done) {
            stream_end(s, PGSPOUT_STATE_DONE, PGSPOUT_DONE);
            return PGSPOUT_DONE;
        }
    }
}

/* ------------------------------------------------------------ public API */

/* Open failed before rows could flow; what names the step for errors that
 * have no server message (timeouts, lost connections). */
static int open_fail(pgspout_stream *s, int code, const char *what)
{
    if (what && code == PGSPOUT_ETIMEOUT)
        set_error(s, "", "timeout of %lld ms exceeded while %s", (long long)s->opt.timeout_ms,
                  what);
    else if (what && code == PGSPOUT_ECONN)
        set_error(s, "08006", "connection lost while %s: %s", what,
                  s->conn->err ? s->conn->err : "");
    if (code == PGSPOUT_ETIMEOUT)
        s->limit_reason = PGS_LIMIT_TIMEOUT;
    s->server_done = 1;
    stream_end(s, PGSPOUT_STATE_FAILED, code);
    return code;
}

/* Bring the session's statement_timeout to what this stream asks for. */
static int apply_statement_timeout(pgspout_stream *s)
{
    pgspout_conn *c = s->conn;
    int64_t want = s->opt.statement_timeout_ms;
    if (want == c->statement_timeout_ms || (want == 0 && c->statement_timeout_ms < 0))
        return 0;
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %lld", (long long)want);
    int rc = exec_utility(c, sql, s->deadline, s);
    if (rc == PGSPOUT_OK)
        c->statement_timeout_ms = want;
    return rc;
}

int pgspout_stream_open(pgspout_conn *conn, const char *sql, int nparams, const char *const *params,
                        const pgspout_options *opts, pgspout_stream **out)
{
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (conn == NULL)
        return PGSPOUT_EINVAL;
    if (sql == NULL || nparams < 0 || nparams > 65535 || (nparams > 0 && params == NULL)) {
        pgs_conn_set_error(conn, "stream_open: %s",
                           sql == NULL                      ? "sql is NULL"
                           : nparams < 0 || nparams > 65535 ? "nparams out of range [0, 65535]"
                                                            : "params is NULL");
        return PGSPOUT_EINVAL;
    }
    if (conn->active) {
        pgs_conn_set_error(conn, "another stream is active on this connection; close it first");
        return PGSPOUT_EBUSY;
    }
    if (!pgspout_conn_ok(conn)) {
        if (conn->err == NULL || strncmp(conn->err, "connection is not usable (", 26) != 0)
            pgs_conn_set_error(conn, "connection is not usable (%s); reconnect",
                               conn->err ? conn->err : "broken");
        return PGSPOUT_ECONN;
    }
    if (opts && opts->chunk_rows_min > opts->chunk_rows_max) {
        pgs_conn_set_error(conn, "chunk_rows_min (%lld) is larger than chunk_rows_max (%lld)",
                           (long long)opts->chunk_rows_min, (long long)opts->chunk_rows_max);
        return PGSPOUT_EVALUE;
    }
    pgspout_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PGSPOUT_ENOMEM;
    if (opts)
        s->opt = *opts;
    else
        pgs_options_defaults(&s->opt);
    s->limit_reason = -1;
    s->wake.fd = -1;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (s->epfd < 0 || pgs_wake_open(&s->wake) != 0 ||
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake.fd, &ev) != 0) {
        pgs_wake_close(&s->wake);
        if (s->epfd >= 0)
            close(s->epfd);
        free(s);
        return PGSPOUT_ENOMEM;
    }
    pthread_mutex_init(&s->ctl, NULL);
    int64_t target0 = s->opt.chunk_rows;
    if (s->opt.adaptive_chunking) {
        if (target0 < s->opt.chunk_rows_min)
            target0 = s->opt.chunk_rows_min;
        if (target0 > s->opt.chunk_rows_max)
            target0 = s->opt.chunk_rows_max;
    }
    STORE(s->chunk_target, target0);
    s->warn_bytes = (size_t)((double)s->opt.max_memory * s->opt.memory_warn);
    s->fail_bytes = (size_t)((double)s->opt.max_memory * s->opt.memory_fail);
    s->target_bytes =
        (uint64_t)s->opt.chunk_bytes < s->warn_bytes ? (size_t)s->opt.chunk_bytes : s->warn_bytes;
    s->t_open = pgs_now_ns();
    s->deadline = s->opt.timeout_ms ? s->t_open + s->opt.timeout_ms * PGS_NS_PER_MS : 0;
    s->progress_next_rows = (uint64_t)s->opt.progress_rows;
    s->progress_next_t = s->t_open + s->opt.progress_interval_ms * PGS_NS_PER_MS;
    s->metrics = s->opt.metrics ? pgs_metrics_label(s->opt.label) : NULL;
    s->conn = conn;
    s->cancel_gen = atomic_load(&conn->cancel_gen);
    conn->active = s;
    *out = s;
    if (s->metrics) {
        pgs_metrics_stream_started(s->metrics);
        pgs_metrics_chunk_rows_gauge(s->metrics, target0);
    }

    int rc = apply_statement_timeout(s);
    if (rc == PGSPOUT_OK && PQtransactionStatus(conn->pg) == PQTRANS_INTRANS) {
        rc = exec_utility(conn, "SAVEPOINT " SAVEPOINT_NAME, s->deadline, s);
        s->savepoint = rc == PGSPOUT_OK;
    }
    if (rc != PGSPOUT_OK)
        return open_fail(s, rc, "preparing the stream");
    if (!PQsendQueryParams(conn->pg, sql, nparams, NULL, params, NULL, NULL, 0)) {
        set_error(s, "", "could not send the query: %s", PQerrorMessage(conn->pg));
        if (PQstatus(conn->pg) != CONNECTION_OK)
            conn->broken = 1;
        return open_fail(s, conn->broken ? PGSPOUT_ECONN : PGSPOUT_EINTERNAL, NULL);
    }
    /* large parameters may not fit the socket at once: send them within the
     * stream's deadline */
    if ((rc = flush_out(conn->pg, s->deadline)) != PGSPOUT_OK) {
        conn->broken = 1;
        return open_fail(s, rc, "sending the query");
    }
#ifdef PGSPOUT_HAVE_CHUNKED_ROWS
    int moded = PQsetChunkedRowsMode(conn->pg, (int)target0);
#else
    int moded = PQsetSingleRowMode(conn->pg);
#endif
    if (!moded) {
        set_error(s, "", "could not switch libpq to %s mode", pgspout_transport());
        stop_server(s);
        return open_fail(s, PGSPOUT_EINTERNAL, NULL);
    }
    rc = fill(s, 0);
    if (rc == PGSPOUT_OK || rc == PGSPOUT_DONE)
        return PGSPOUT_OK;
    return rc;
}

const char *pgspout_transport(void)
{
#ifdef PGSPOUT_HAVE_CHUNKED_ROWS
    return "chunked";
#else
    return "single-row";
#endif
}

int pgspout_stream_next(pgspout_stream *s, const pgspout_row **row)
{
    if (s == NULL || row == NULL)
        return PGSPOUT_EINVAL;
    int p = LOAD(s->pos);
    if (p >= s->nrows || LOAD(s->cancel_req)) {
        int rc = fill(s, 0);
        if (rc != PGSPOUT_OK)
            return rc;
        p = 0;
    }
    *row = &s->rows[p];
    STORE(s->pos, p + 1);
    return PGSPOUT_OK;
}

int pgspout_stream_next_chunk(pgspout_stream *s, int flags, const pgspout_chunk **chunk)
{
    if (s == NULL || chunk == NULL || (flags & ~PGSPOUT_NONBLOCK))
        return PGSPOUT_EINVAL;
    int p = LOAD(s->pos);
    if (p >= s->nrows || LOAD(s->cancel_req)) {
        int rc = fill(s, flags & PGSPOUT_NONBLOCK);
        if (rc != PGSPOUT_OK)
            return rc;
        p = 0;
    }
    s->view.rows = s->rows + p;
    s->view.n = s->nrows - p;
    STORE(s->pos, s->nrows);
    *chunk = &s->view;
    return PGSPOUT_OK;
}

int pgspout_chunk_nrows(const pgspout_chunk *c) { return c ? c->n : 0; }

const pgspout_row *pgspout_chunk_row(const pgspout_chunk *c, int i)
{
    return c && i >= 0 && i < c->n ? &c->rows[i] : NULL;
}

int pgspout_stream_socket(const pgspout_stream *s) { return s ? s->epfd : -1; }

int pgspout_stream_wait_ms(const pgspout_stream *s)
{
    if (s == NULL || s->wait_until == 0)
        return -1;
    int64_t left = s->wait_until - pgs_now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + PGS_NS_PER_MS - 1) / PGS_NS_PER_MS;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

int pgspout_stream_ncols(const pgspout_stream *s) { return s ? s->ncols : 0; }

const char *pgspout_stream_colname(const pgspout_stream *s, int col)
{
    return s && s->meta && col >= 0 && col < s->ncols ? PQfname(s->meta, col) : NULL;
}

unsigned int pgspout_stream_coltype(const pgspout_stream *s, int col)
{
    return s && s->meta && col >= 0 && col < s->ncols ? PQftype(s->meta, col) : 0;
}

int pgspout_row_ncols(const pgspout_row *row) { return row ? row->ncols : 0; }

const char *pgspout_row_value(const pgspout_row *row, int col, size_t *len)
{
    if (row == NULL || col < 0 || col >= row->ncols)
        return NULL;
    int32_t l = row->f[col].len;
    if (len)
        *len = l < 0 ? 0 : (size_t)l;
    return row->data + row->f[col].off;
}

int pgspout_row_isnull(const pgspout_row *row, int col)
{
    if (row == NULL || col < 0 || col >= row->ncols)
        return -1;
    return row->f[col].len < 0;
}

int pgs_stream_render_row(pgspout_stream *s, const pgspout_row *row, pgs_buf *b)
{
    const pgs_field *f = row->f;
    if (s->json_single)
        return pgs_json_value(b, s->json_kind[0], row->data + f[0].off,
                              f[0].len < 0 ? 0 : (size_t)f[0].len, f[0].len < 0);
    if (pgs_buf_putc(b, '{') != 0)
        return -1;
    for (int c = 0; c < row->ncols; c++) {
        pgs_buf_append(b, s->json_key[c], s->json_key_len[c]);
        pgs_json_value(b, s->json_kind[c], row->data + f[c].off,
                       f[c].len < 0 ? 0 : (size_t)f[c].len, f[c].len < 0);
    }
    return pgs_buf_putc(b, '}');
}

int pgspout_row_json(pgspout_stream *s, const pgspout_row *row, const char **json, size_t *len)
{
    if (s == NULL || row == NULL || json == NULL)
        return PGSPOUT_EINVAL;
    pgs_buf_clear(&s->json);
    if (pgs_stream_render_row(s, row, &s->json) != 0 || s->json.oom)
        return PGSPOUT_ENOMEM;
    *json = s->json.data;
    if (len)
        *len = s->json.len;
    return PGSPOUT_OK;
}

int pgspout_chunk_ndjson(pgspout_stream *s, const pgspout_chunk *c, const char **out, size_t *len)
{
    if (s == NULL || c == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    pgs_buf_clear(&s->json);
    for (int i = 0; i < c->n; i++) {
        pgs_stream_render_row(s, &c->rows[i], &s->json);
        pgs_buf_putc(&s->json, '\n');
    }
    if (pgs_buf_reserve(&s->json, 0) != 0)
        return PGSPOUT_ENOMEM;
    *out = s->json.data;
    if (len)
        *len = s->json.len;
    return PGSPOUT_OK;
}

int pgspout_stream_pause(pgspout_stream *s)
{
    if (s == NULL)
        return PGSPOUT_EINVAL;
    if (LOAD(s->ended) || LOAD(s->cancel_req))
        return PGSPOUT_ESTATE;
    int expected = 0;
    if (atomic_compare_exchange_strong(&s->pause_req, &expected, 1)) {
        STORE(s->pause_started, pgs_now_ns());
        atomic_fetch_add(&s->pauses, 1);
        if (s->metrics)
            pgs_metrics_pause(s->metrics);
    }
    pgs_wake_signal(&s->wake);
    return PGSPOUT_OK;
}

int pgspout_stream_resume(pgspout_stream *s)
{
    if (s == NULL)
        return PGSPOUT_EINVAL;
    if (LOAD(s->ended) || LOAD(s->cancel_req))
        return PGSPOUT_ESTATE;
    do_resume(s, pgs_now_ns());
    pgs_wake_signal(&s->wake);
    return PGSPOUT_OK;
}

int pgspout_stream_cancel(pgspout_stream *s)
{
    if (s == NULL)
        return PGSPOUT_EINVAL;
    pthread_mutex_lock(&s->ctl);
    int rc = PGSPOUT_OK;
    if (LOAD(s->ended))
        rc = PGSPOUT_ESTATE;
    else if (!atomic_exchange(&s->cancel_req, 1) && s->conn && !s->server_done)
        pgs_conn_send_cancel(s->conn, PGS_CANCEL_WAIT_MS);
    pthread_mutex_unlock(&s->ctl);
    pgs_wake_signal(&s->wake);
    return rc;
}

int pgspout_stream_state(const pgspout_stream *s)
{
    if (s == NULL)
        return PGSPOUT_STATE_CLOSED;
    int e = atomic_load(&s->ended);
    if (e)
        return e;
    if (LOAD(s->cancel_req)) /* the owner finishes it at its next call */
        return PGSPOUT_STATE_CANCELLED;
    return LOAD(s->pause_req) ? PGSPOUT_STATE_PAUSED : PGSPOUT_STATE_RUNNING;
}

const char *pgspout_stream_error(const pgspout_stream *s)
{
    if (s == NULL)
        return "stream handle is NULL";
    if (s->err == NULL && LOAD(s->ended) && s->result_code < 0)
        return pgspout_strerror(s->result_code); /* the message could not be allocated */
    return s->err ? s->err : "";
}

const char *pgspout_stream_sqlstate(const pgspout_stream *s) { return s ? s->sqlstate : ""; }

int pgspout_stream_errcode(const pgspout_stream *s)
{
    return s && LOAD(s->ended) && s->result_code < 0 ? s->result_code : PGSPOUT_OK;
}

/* End a stream whose connection is closing; the caller still closes it. */
void pgs_stream_detach(pgspout_stream *s)
{
    if (LOAD(s->ended))
        return;
    stop_server(s);
    release_chunk(s);
    drop_carry(s);
    set_error(s, "", "the stream's connection was closed");
    stream_end(s, PGSPOUT_STATE_CLOSED, PGSPOUT_ESTATE);
}

void pgspout_stream_close(pgspout_stream *s)
{
    if (s == NULL)
        return;
    if (!LOAD(s->ended)) {
        stop_server(s);
        stream_end(s, PGSPOUT_STATE_CANCELLED, PGSPOUT_ECANCELLED);
    }
    release_chunk(s);
    drop_carry(s);
    PQclear(s->meta);
    for (int c = 0; s->json_key && c < s->ncols; c++)
        free(s->json_key[c]);
    free(s->json_key);
    free(s->json_key_len);
    free(s->json_kind);
    free(s->rows);
    free(s->arena);
    free(s->lens);
    pgs_buf_free(&s->json);
    pgs_wake_close(&s->wake);
    if (s->epfd >= 0)
        close(s->epfd);
    pthread_mutex_destroy(&s->ctl);
    free(s->err);
    free(s);
}
