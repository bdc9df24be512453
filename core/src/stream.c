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
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

/* How long a drain after a cancel, or a utility statement between streams,
 * may take before the connection is given up as unusable. */
#define DRAIN_NS (5 * PGS_NS_PER_S)
/* Drains at once past which a pooled connection given back with its
 * statement still running is closed rather than drained (pgs_stream_release). */
#define DRAINS_MAX 2
/* Adaptive chunking: votes needed and minimum time between two changes. */
#define ADAPT_VOTES       3
#define ADAPT_INTERVAL_NS (250 * PGS_NS_PER_MS)
/* A wait on the socket shorter than this found rows already there. */
#define READY_NS (20 * PGS_NS_PER_MS / 1000)

enum { RETRY = 100 }; /* internal: re-run the control checks */
/* cancel_sent: pgspout_stream_cancel's request reached the server, before
 * the statement's first row (it may have come before the statement began,
 * which ignores it) or once rows were arriving (the statement was running:
 * it ends, by the cancel or on its own) */
enum { CANCEL_SENT = 1, CANCEL_SENT_RUNNING = 2 };

/* ------------------------------------------------------------- log hook */

static pgspout_log_fn log_fn;
static void *log_ud;
static pgspout_log_record_fn log_record_fn;
static void *log_record_ud;

void pgspout_set_log_hook(pgspout_log_fn fn, void *userdata)
{
    log_fn = fn;
    log_ud = userdata;
}

void pgspout_set_log_record_hook(pgspout_log_record_fn fn, void *userdata)
{
    log_record_fn = fn;
    log_record_ud = userdata;
}

static void log_va(int level, const char *label, const char *severity, const char *sqlstate,
                   const char *fmt, va_list ap)
{
    pgspout_log_fn plain = log_fn;
    pgspout_log_record_fn rec = log_record_fn;
    if (plain == NULL && rec == NULL)
        return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (rec) {
        pgspout_log_record r = {sizeof r, level, msg, label, severity, sqlstate};
        rec(&r, log_record_ud);
    }
    if (plain) {
        int old_level = level < PGSPOUT_LOG_INFO ? PGSPOUT_LOG_INFO : level;
        if (label == NULL) {
            plain(old_level, msg, log_ud);
        } else {
            char full[600];
            snprintf(full, sizeof full, "stream %s: %s", label, msg);
            plain(old_level, full, log_ud);
        }
    }
}

void pgs_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_va(level, NULL, NULL, NULL, fmt, ap);
    va_end(ap);
}

void pgs_log_ex(int level, const char *label, const char *severity, const char *sqlstate,
                const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_va(level, label, severity, sqlstate, fmt, ap);
    va_end(ap);
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

/* The connection cannot run another statement; why goes on the connection
 * (pgspout_conn_error), with libpq's reason when it has one. */
static void mark_broken(pgspout_conn *c, const char *why)
{
    const char *pq = c->pg ? PQerrorMessage(c->pg) : "";
    c->broken = 1;
    if (pq && *pq)
        pgs_conn_set_error(c, "%s: %s", why, pq);
    else
        pgs_conn_set_error(c, "%s", why);
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

/* Bytes the current chunk holds: its values and field tables in the arena,
 * and one index entry per row. max_memory bounds this. */
static size_t held_bytes(const pgspout_stream *s)
{
    return s->arena_used + (size_t)s->nrows * sizeof(pgspout_row);
}

/* Most rows a chunk can index within its byte budget (the first row of a
 * chunk is always taken, whatever it costs). */
static int rows_limit(const pgspout_stream *s)
{
    size_t n = s->target_bytes / sizeof(pgspout_row) + 1;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

/* The row index grown to hold need rows (doubling, never past rows_limit);
 * -1 if realloc failed. */
static int reserve_rows(pgspout_stream *s, int need)
{
    if (need <= s->cap)
        return 0;
    int lim = rows_limit(s);
    int64_t n = s->cap ? (int64_t)s->cap * 2 : 64;
    while (n < need)
        n *= 2;
    if (n > lim)
        n = lim > need ? lim : need;
    pgspout_row *rows = realloc(s->rows, (size_t)n * sizeof *rows);
    if (rows == NULL)
        return -1;
    s->rows = rows;
    s->cap = (int)n;
    return 0;
}

static int set_meta(pgspout_stream *s, const PGresult *res)
{
    if (s->desc_cached == 1) { /* the connection's earlier description */
        int same = PQnfields(res) == s->ndesc;
        for (int c = 0; same && c < s->ndesc; c++)
            same = PQftype(res, c) == s->desc_oids[c];
        if (!same) {
            s->desc_cached = 2;
            if (s->conn)
                pgs_described_drop(s->conn, s->desc_entry);
            pgs_log_ex(PGSPOUT_LOG_INFO, s->opt.label, NULL, NULL,
                       "JSON rows: the statement's result types changed since this connection "
                       "described it (DDL, another search_path): its rows render with the new "
                       "types; the next run describes it anew");
        }
    }
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
    s->json_type = calloc((size_t)n, sizeof *s->json_type);
    s->json_key = calloc((size_t)n, sizeof *s->json_key);
    s->json_key_len = calloc((size_t)n, sizeof *s->json_key_len);
    if (!s->json_kind || !s->json_type || !s->json_key || !s->json_key_len)
        return -1;
    for (int c = 0; c < n; c++) {
        int kind = pgs_jtypes_column(&s->jtypes, s->conn ? s->conn->types : NULL,
                                     PQftype(s->meta, c), &s->json_type[c]);
        if (kind < 0)
            return -1;
        s->json_kind[c] = kind;
        s->json_trees |= kind == PGS_JSON_TREE;
        if (kind == PGS_JSON_UNRESOLVED && s->json_unresolved < 0)
            s->json_unresolved = c;
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
    s->json_single = n == 1 && s->json_sql == NULL /* json of the user's, not to_json's */ &&
                     (s->json_kind[0] == PGS_JSON_RAW || s->json_kind[0] == PGS_JSON_RAW_LINES);
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
    pgspout_conn *released = NULL;
    if (s->conn) {
        if (s->conn->active == s) {
            s->conn->active = NULL;
            if (s->conn->released)
                released = s->conn;
        }
        s->conn = NULL;
    }
    pthread_mutex_unlock(&s->ctl);
    pgspout_conn_close(released); /* its owner let go of it while we ran */

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

/* What next_result found: the end of what was sent, nothing to use (the
 * pipeline goes on), a result, or a pipeline libpq would not leave. */
enum { RES_END, RES_SKIP, RES_USE, RES_FAIL };

/* The next result of what was sent, for the loops that read them all (call
 * when !PQisBusy). Outside a pipeline, libpq's NULL ends them. In one
 * (describe's: Parse, Describe, Sync sent at once), the NULLs between its
 * commands and the results of commands an error aborted are skipped, and a
 * PIPELINE_SYNC ends them: the connection then leaves pipeline mode, unless
 * more was sent behind that Sync (c->syncs: the pool's reset after a
 * stream's statement), which a later read takes. */
static int next_result(pgspout_conn *c, PGresult **out)
{
    PGconn *pg = c->pg;
    PGresult *r = *out = PQgetResult(pg);
    if (PQpipelineStatus(pg) == PQ_PIPELINE_OFF)
        return r ? RES_USE : RES_END;
    if (r == NULL)
        return RES_SKIP;
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_PIPELINE_SYNC && st != PGRES_PIPELINE_ABORTED)
        return RES_USE;
    PQclear(r);
    *out = NULL;
    if (st == PGRES_PIPELINE_ABORTED)
        return RES_SKIP;
    if (c->syncs > 0 && --c->syncs > 0)
        return RES_END;
    return PQexitPipelineMode(pg) ? RES_END : RES_FAIL;
}

static int drain_body(pgspout_conn *c, int64_t deadline)
{
    PGconn *pg = c->pg;
    int saw = 0;
    for (;;) {
        while (!PQisBusy(pg)) {
            PGresult *r;
            int k = next_result(c, &r);
            if (k == RES_END || k == RES_FAIL)
                return k == RES_END ? saw : -1;
            if (k == RES_SKIP)
                continue;
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_SINGLE_TUPLE || (int)st == PGS_TUPLES_CHUNK)
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

/* Read and discard what is left of the current query. A mask of what it
 * discarded (DRAINED_*), or -1 if the connection could not be brought back
 * to idle before the deadline. A cleanup: the interrupt hook is not asked. */
static int drain(pgspout_conn *c, int64_t deadline)
{
    pgs_interrupt_suspend();
    int saw = drain_body(c, deadline);
    pgs_interrupt_resume();
    return saw;
}

/* Send what libpq has queued, waiting at most until deadline (0 = none).
 * PGSPOUT_OK, ETIMEOUT, EINTR (the interrupt hook) or ECONN. */
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
        if (w == PGS_WAIT_INTERRUPTED)
            return PGSPOUT_EINTR;
        if (w < 0)
            return PGSPOUT_ECONN;
        if ((w & PGS_WAIT_SOCKET) && !PQconsumeInput(pg))
            return PGSPOUT_ECONN;
    }
}

/* Stop the statement running on c (a cancel, then a drain); 0 when the
 * connection is idle again, else it is marked broken. */
static int abort_statement(pgspout_conn *c, int64_t cancel_ms)
{
    if (pgs_conn_send_cancel(c, cancel_ms) != 0) {
        mark_broken(c, "the server did not take a cancel request in time; connection closed "
                       "for safety");
        return -1;
    }
    if (drain(c, pgs_now_ns() + DRAIN_NS) < 0) {
        mark_broken(c, "connection lost while stopping a statement");
        return -1;
    }
    return 0;
}

/* Called with every result of a statement await_results reads (not to be
 * cleared); failed: an earlier result was not COMMAND_OK. */
typedef void (*result_fn)(PGresult *r, int failed, void *ud);

/* After the PQsend* call that returned sent, flush it and read every result
 * within deadline, handing each to each. PGSPOUT_OK, ESQL (some result was
 * not COMMAND_OK), ETIMEOUT, EINTR or ECONN; on ETIMEOUT and ECONN the
 * connection is marked broken ("connection unusable after <what>": it may
 * be mid-statement); EINTR stopped the statement and left it usable. */
static int await_results(pgspout_conn *c, int sent, const char *what, int64_t deadline,
                         result_fn each, void *ud)
{
    PGconn *pg = c->pg;
    int rc = sent ? flush_out(pg, deadline) : PGSPOUT_ECONN;
    int failed = 0;
    while (rc == PGSPOUT_OK) {
        if (!PQisBusy(pg)) {
            PGresult *r;
            int k = next_result(c, &r);
            if (k == RES_END)
                return failed ? PGSPOUT_ESQL : PGSPOUT_OK;
            if (k == RES_FAIL) {
                rc = PGSPOUT_ECONN;
                break;
            }
            if (k == RES_SKIP)
                continue;
            each(r, failed, ud);
            failed |= PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK;
            PQclear(r);
            continue;
        }
        if (!PQconsumeInput(pg))
            rc = PGSPOUT_ECONN;
        else if (PQisBusy(pg)) {
            int w = pgs_wait(PQsocket(pg), -1, deadline);
            rc = w == 0                      ? PGSPOUT_ETIMEOUT
                 : w == PGS_WAIT_INTERRUPTED ? PGSPOUT_EINTR
                 : w < 0                     ? PGSPOUT_ECONN
                                             : PGSPOUT_OK;
        }
    }
    if (rc == PGSPOUT_EINTR) {
        abort_statement(c, c->cancel_timeout_ms); /* says why if it breaks c */
        return rc;
    }
    c->broken = 1;
    pgs_conn_set_error(c, "connection unusable after %s: %s", what,
                       rc == PGSPOUT_ETIMEOUT ? "timed out" : PQerrorMessage(pg));
    return rc;
}

/* One pass of await_results that never waits: PGSPOUT_OK once every result
 * was read (*failed: some result was not COMMAND_OK), AGAIN to wait for the
 * socket (readable; writable too when *want_write), or ECONN. */
static int await_step(pgspout_conn *c, int *want_write, int *failed, result_fn each, void *ud)
{
    PGconn *pg = c->pg;
    int f = PQflush(pg);
    *want_write = f > 0;
    if (f < 0 || !PQconsumeInput(pg))
        return PGSPOUT_ECONN;
    if (f > 0)
        return PGSPOUT_AGAIN;
    while (!PQisBusy(pg)) {
        PGresult *r;
        int k = next_result(c, &r);
        if (k == RES_END || k == RES_FAIL)
            return k == RES_END ? PGSPOUT_OK : PGSPOUT_ECONN;
        if (k == RES_SKIP)
            continue;
        each(r, *failed, ud);
        *failed |= PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK;
        PQclear(r);
    }
    return PGSPOUT_AGAIN;
}

/* One pass of drain that never waits: 1 once the connection is idle (what
 * it discarded added to *saw), 0 to wait for the socket, -1 when it cannot
 * go on this way (connection lost, COPY). */
static int drain_step(pgspout_conn *c, int *saw)
{
    PGconn *pg = c->pg;
    if (!PQconsumeInput(pg))
        return -1;
    while (!PQisBusy(pg)) {
        PGresult *r;
        int k = next_result(c, &r);
        if (k == RES_END || k == RES_FAIL)
            return k == RES_END ? 1 : -1;
        if (k == RES_SKIP)
            continue;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE || (int)st == PGS_TUPLES_CHUNK)
            *saw |= DRAINED_ROWS;
        else if (st == PGRES_FATAL_ERROR)
            *saw |= DRAINED_ERROR;
        PQclear(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            return -1;
    }
    return 0;
}

typedef struct utility {
    const char *sql;
    pgspout_stream *errs;
} utility;

static void utility_result(PGresult *r, int failed, void *ud)
{
    const utility *u = ud;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && !failed) {
        /* every statement pgspout adds is meant to succeed */
        pgs_log_ex(PGSPOUT_LOG_ERROR, u->errs ? u->errs->opt.label : NULL, NULL, NULL,
                   "the server refused \"%s\", which pgspout sent: %s", u->sql,
                   PQresultErrorMessage(r));
        if (u->errs)
            set_sql_error(u->errs, r);
    }
}

/* Run a utility statement (SET, SAVEPOINT...) with a deadline; the server's
 * error goes on errs when given. Returns as await_results. */
static int exec_utility(pgspout_conn *c, const char *sql, int64_t deadline, pgspout_stream *errs)
{
    utility u = {sql, errs};
    return await_results(c, PQsendQuery(c->pg, sql), sql, deadline, utility_result, &u);
}

static void exec_result(PGresult *r, int failed, void *ud)
{
    pgspout_conn *c = ud;
    ExecStatusType st = PQresultStatus(r);
    if (!failed && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        pgs_conn_set_error(c, "%s", PQresultErrorMessage(r));
}

int pgs_conn_exec(pgspout_conn *c, const char *sql, int64_t deadline)
{
    int rc = await_results(c, PQsendQuery(c->pg, sql), sql, deadline, exec_result, c);
    pgs_conn_drop_notifies(c);
    return rc;
}

/* Enter pipeline mode for what is sent next, which ends with syncs Syncs
 * (next_result leaves the mode at the last). 1, or 0 when libpq refused. */
static int enter_pipeline(pgspout_conn *c, int syncs)
{
    c->syncs = syncs;
    return PQenterPipelineMode(c->pg);
}

/* In a pipeline: the statements, each its own Parse, Bind and Execute, then
 * a Sync. 1 when sent, 0 when libpq refused. */
static int send_statements(PGconn *pg, const char *const *sqls, int n)
{
    int ok = 1;
    for (int i = 0; ok && i < n; i++)
        ok = PQsendQueryParams(pg, sqls[i], 0, NULL, NULL, NULL, NULL, 0);
    return ok && PQpipelineSync(pg);
}

int pgs_conn_exec_pipeline(pgspout_conn *c, const char *const *sqls, int n, int64_t deadline)
{
    int sent = enter_pipeline(c, 1) && send_statements(c->pg, sqls, n);
    int rc = await_results(c, sent, sqls[0], deadline, exec_result, c);
    pgs_conn_drop_notifies(c);
    return rc;
}

static void ignore_result(PGresult *r, int failed, void *ud)
{
    (void)r;
    (void)failed;
    (void)ud;
}

int pgs_conn_finish_reset(pgspout_conn *c, int64_t deadline)
{
    c->reset_queued = 0;
    int rc = PGSPOUT_OK;
    /* the statement's Sync, unless its stream read it (a drain did) */
    while (rc == PGSPOUT_OK && c->syncs > 1) {
        rc = await_results(c, 1, "a stream's end", deadline, ignore_result, NULL);
        if (rc == PGSPOUT_ESQL) /* the stream has seen its error */
            rc = PGSPOUT_OK;
    }
    if (rc == PGSPOUT_OK)
        rc = await_results(c, 1, pgs_pool_reset_sql[0], deadline, exec_result, c);
    pgs_conn_drop_notifies(c);
    return rc;
}

typedef struct exec_value {
    pgspout_conn *c;
    char *value; /* the first value of the last result with rows */
} exec_value;

static void exec_value_result(PGresult *r, int failed, void *ud)
{
    exec_value *v = ud;
    exec_result(r, failed, v->c);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0) {
        free(v->value);
        v->value = strdup(PQgetvalue(r, 0, 0));
    }
}

int pgs_conn_exec_value(pgspout_conn *c, const char *sql, int64_t deadline, char **value)
{
    exec_value v = {c, NULL};
    int rc = await_results(c, PQsendQuery(c->pg, sql), sql, deadline, exec_value_result, &v);
    pgs_conn_drop_notifies(c);
    if (rc == PGSPOUT_OK && v.value == NULL) {
        pgs_conn_set_error(c, "\"%s\" returned no value", sql);
        rc = PGSPOUT_ENOMEM; /* a SELECT that returns its row: only strdup failed */
    }
    if (rc != PGSPOUT_OK) {
        free(v.value);
        v.value = NULL;
    }
    *value = v.value;
    return rc;
}

typedef struct described {
    pgspout_stream *s;
    int *binary;
} described;

static void described_result(PGresult *r, int failed, void *ud)
{
    const described *d = ud;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        if (!failed)
            set_sql_error(d->s, r);
        return;
    }
    if (!d->s->opt.arrow && !d->s->opt.binary) { /* option json: the columns' types */
        int n = PQnfields(r);
        if (n > 0 && d->s->desc_oids == NULL) {
            d->s->desc_oids = malloc((size_t)n * sizeof *d->s->desc_oids);
            d->s->desc = PQcopyResult(r, PG_COPYRES_ATTRS);
            d->s->ndesc = d->s->desc_oids && d->s->desc ? n : -1;
            for (int f = 0; d->s->desc_oids && f < n; f++)
                d->s->desc_oids[f] = PQftype(r, f);
        }
        return;
    }
    if (PQnfields(r) > 0) /* the Describe's result: the columns */
        *d->binary = 1;
    for (int f = 0; f < PQnfields(r); f++)
        *d->binary &= d->s->opt.arrow ? pgs_arrow_binary_ok(PQftype(r, f), PQfmod(r, f))
                                      : pgs_rows_binary_ok(PQftype(r, f), d->s->conn->pg);
}

/* Parse sql as the unnamed statement and describe it, in one round trip: a
 * pipeline of Parse, Describe and Sync (next_result reads it to its end).
 * 1 when sent, 0 when libpq refused. */
static int send_describe(pgspout_conn *c, const char *sql, int nparams)
{
    return enter_pipeline(c, 1) && PQsendPrepare(c->pg, "", sql, nparams, NULL) &&
           PQsendDescribePrepared(c->pg, "") && PQpipelineSync(c->pg);
}

/* Options arrow, binary and json: prepare the statement unnamed and
 * describe it (s->unnamed set: the query runs it, unless the catalog
 * lookup's query replaced it), so that the results can come in binary
 * when every column's type allows (pgs_arrow_binary_ok, pgs_rows_binary_ok:
 * *binary set), else in text, and JSON knows the columns' types.
 * PGSPOUT_OK, or ESQL (the server refused the SQL: its error is on s),
 * ETIMEOUT, EINTR or ECONN as await_results. */
static int describe(pgspout_stream *s, const char *sql, int nparams, int *binary)
{
    described d = {s, binary};
    *binary = 0;
    int rc = await_results(s->conn, send_describe(s->conn, sql, nparams),
                           "describing the statement", s->deadline, described_result, &d);
    s->unnamed = rc == PGSPOUT_OK;
    return rc;
}

/* Option json: the catalog's rows for the types the described columns need
 * (jsontypes.c), taken into the connection's cache and the stream. */
static void types_result(PGresult *r, int failed, void *ud)
{
    pgspout_stream *s = ud;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (!failed && PQresultStatus(r) != PGRES_COMMAND_OK)
            set_sql_error(s, r);
        return;
    }
    s->unnamed = 0; /* a simple query replaces the unnamed statement */
    if (PQnfields(r) != PGS_JTYPES_NCOLS) {
        s->ndesc = -1;
        return;
    }
    s->jtypes.looked_up = 1;
    for (int i = 0; i < PQntuples(r) && s->ndesc >= 0; i++) {
        const char *v[PGS_JTYPES_NCOLS];
        for (int f = 0; f < PGS_JTYPES_NCOLS; f++)
            v[f] = PQgetisnull(r, i, f) ? NULL : PQgetvalue(r, i, f);
        if (pgs_jtypes_row(&s->jtypes, s->conn->types, v) != 0)
            s->ndesc = -1;
    }
}

/* Option json, once the statement is described: the catalog query for the
 * types of its columns that need one, in *sql (malloc'd), or NULL when none
 * does (the built-in table and the connection's cache know them all).
 * PGSPOUT_OK or ENOMEM. */
static int types_query(pgspout_stream *s, char **sql)
{
    pgspout_conn *c = s->conn;
    *sql = NULL;
    s->jtypes.catalog = 1;
    if (s->ndesc < 0)
        return PGSPOUT_ENOMEM;
    if (c->types == NULL && (c->types = calloc(1, sizeof *c->types)) == NULL)
        return PGSPOUT_ENOMEM;
    int n = pgs_jtypes_need(&s->jtypes, c->types, s->desc_oids, s->ndesc);
    if (n < 0)
        return PGSPOUT_ENOMEM;
    s->types_looked_up = n > 0;
    if (n > 0 && (*sql = pgs_jtypes_sql(&s->jtypes, PQserverVersion(c->pg))) == NULL)
        return PGSPOUT_ENOMEM;
    if (n > 0)
        pgs_log_ex(PGSPOUT_LOG_DEBUG, s->opt.label, NULL, NULL,
                   "JSON rows: looking up %d type%s in the catalog (first: %u)", n,
                   n == 1 ? "" : "s", s->jtypes.need[0]);
    return PGSPOUT_OK;
}

/* Option json (pgspout_stream_open): look the columns' types up, when they
 * need it, before the statement runs. Returns as await_results, or ENOMEM. */
static int lookup_types(pgspout_stream *s)
{
    char *sql;
    int rc = types_query(s, &sql);
    if (rc != PGSPOUT_OK || sql == NULL)
        return rc;
    rc = await_results(s->conn, PQsendQuery(s->conn->pg, sql), "looking up the columns' types",
                       s->deadline, types_result, s);
    free(sql);
    if (rc == PGSPOUT_OK && s->ndesc < 0)
        rc = PGSPOUT_ENOMEM;
    return rc;
}

/* Option json: the connection described this statement before
 * (described.c): take those types instead of a describe round trip. The
 * statement then runs in text (any type's values render from it), and its
 * first result is checked against them (set_meta). 1 when taken. */
static int described_before(pgspout_stream *s, const char *sql, int nparams)
{
    if (!s->opt.json || s->opt.arrow || s->opt.binary)
        return 0;
    const unsigned int *oids;
    int n;
    int i = pgs_described_find(s->conn, sql, nparams, &oids, &n);
    if (i < 0)
        return 0;
    unsigned int *copy = malloc((size_t)(n > 0 ? n : 1) * sizeof *copy);
    if (copy == NULL)
        return 0; /* described the usual way */
    if (n > 0)
        memcpy(copy, oids, (size_t)n * sizeof *copy);
    free(s->desc_oids);
    s->desc_oids = copy;
    s->ndesc = n;
    s->desc_entry = i;
    s->desc_cached = 1;
    s->jtypes.catalog = 1; /* the connection's type cache knows them all */
    s->binary = 0;
    s->unnamed = 0;
    return 1;
}

/* Option json, described and about to run: remember the types for the next
 * run of the same text on this connection when they alone decide how its
 * rows render (no catalog lookup, not made a subquery). */
static void described_keep(pgspout_stream *s, const char *sql, int nparams)
{
    if (s->opt.json && !s->opt.arrow && !s->opt.binary && !s->desc_cached && s->ndesc >= 0 &&
        (s->ndesc == 0 || s->desc_oids) && !s->types_looked_up && s->json_sql == NULL)
        pgs_described_put(s->conn, sql, nparams, s->desc_oids, s->ndesc);
}

/* Option json, once the types are known: when a column's values only the
 * server renders as row_to_json does (anonymous records, anyarray, types
 * with a cast to json, or composites and arrays of them), run the
 * statement as a subquery that passes those columns through to_json
 * (s->json_sql); a statement that cannot be a subquery keeps them as their
 * text (json_ready warns). PGSPOUT_OK or ENOMEM. */
static int json_wrap(pgspout_stream *s, const char *sql)
{
    if (!s->opt.json || s->opt.arrow || s->opt.binary || s->ndesc <= 0 || s->json_sql ||
        s->desc_cached)
        return PGSPOUT_OK;
    int n = s->ndesc, server = 0;
    unsigned char *wrap = calloc((size_t)n, 1);
    const char **names = calloc((size_t)n, sizeof *names);
    int rc = wrap && names ? PGSPOUT_OK : PGSPOUT_ENOMEM;
    for (int c = 0; c < n && rc == PGSPOUT_OK; c++) {
        const pgs_jtype *t;
        int kind = pgs_jtypes_column(&s->jtypes, s->conn->types, s->desc_oids[c], &t);
        if (kind < 0)
            rc = PGSPOUT_ENOMEM;
        wrap[c] = kind == PGS_JSON_TREE && pgs_jtype_server_only(t);
        server += wrap[c];
        names[c] = PQfname(s->desc, c);
    }
    const char *scs = PQparameterStatus(s->conn->pg, "standard_conforming_strings");
    size_t len =
        rc == PGSPOUT_OK && server ? pgs_json_query_len(sql, scs && !strcmp(scs, "on")) : 0;
    if (len > 0) {
        s->json_sql = pgs_json_wrap(sql, len, n, names, wrap);
        if (s->json_sql == NULL) {
            rc = PGSPOUT_ENOMEM;
        } else { /* the to_json columns are json: nothing falls back */
            s->jtypes.fallback_kind = 0;
            s->jtypes.fallback_oid = 0;
            pgs_log_ex(PGSPOUT_LOG_DEBUG, s->opt.label, NULL, NULL,
                       "JSON rows: %d column%s rendered by the server's to_json", server,
                       server == 1 ? "" : "s");
        }
    }
    free(wrap);
    free(names);
    return rc;
}

/* Inside the caller's transaction block a stream runs under a savepoint, so
 * that cancelling it (cancel, close, a limit) does not abort the caller's
 * transaction: rollback undoes just the stream's statement. Transaction
 * control statements run bare, exactly as through libpq: a savepoint
 * around them would be released or rolled back with theirs (SAVEPOINT a
 * inside ours dies with ours), or refused (SET TRANSACTION in a
 * subtransaction), or gone (COMMIT). */
#define SAVEPOINT_NAME "pgspout_stream_sp"

/* Option snapshot: the stream runs in a transaction of its own (BEGIN
 * ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT), ended with
 * its statement: ROLLBACK, as the transaction only read (and so that a
 * failed one ends too). */
static void own_tx_end(pgspout_stream *s)
{
    pgspout_conn *c = s->conn;
    if (!s->own_tx || c == NULL || c->broken)
        return;
    s->own_tx = 0;
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return;
    pgs_interrupt_suspend();
    exec_utility(c, "ROLLBACK", pgs_now_ns() + DRAIN_NS, NULL);
    pgs_interrupt_resume();
}

static void savepoint_end(pgspout_stream *s, int rollback)
{
    pgspout_conn *c = s->conn;
    if (s->own_tx) {
        own_tx_end(s);
        return;
    }
    if (!s->savepoint || c == NULL || c->broken)
        return;
    s->savepoint = 0;
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_INERROR && !rollback)
        return; /* the server's own error: the caller's transaction is aborted, as usual */
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return; /* the transaction ended: the savepoint went with it */
    pgs_interrupt_suspend();
    exec_utility(c,
                 rollback ? "ROLLBACK TO SAVEPOINT " SAVEPOINT_NAME
                            "; RELEASE SAVEPOINT " SAVEPOINT_NAME
                          : "RELEASE SAVEPOINT " SAVEPOINT_NAME,
                 pgs_now_ns() + DRAIN_NS, NULL);
    pgs_interrupt_resume();
}

/* stop_server's drains running now in the process (pgs_stream_release). */
static _Atomic int drains_running;

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
    /* pgspout_stream_cancel's request, sent once rows were arriving (the
     * statement running), stops the statement: no second one (a round trip
     * and a process of the server's each) */
    int sent = LOAD(s->cancel_sent) == CANCEL_SENT_RUNNING
                   ? 0
                   : pgs_conn_send_cancel(c, s->opt.cancel_timeout_ms);
    if (sent != 0) {
        c->broken = 1;
        if (sent == -2)
            pgs_conn_set_error(c, "out of memory while cancelling the query; "
                                  "connection closed for safety");
        else
            pgs_conn_set_error(c,
                               "the server did not take a cancel request within cancel_timeout "
                               "(%lld ms); connection closed for safety",
                               (long long)s->opt.cancel_timeout_ms);
        return DRAINED_ROWS | DRAINED_ERROR;
    }
    if (!s->drain_counted)
        atomic_fetch_add(&drains_running, 1);
    int saw = drain(c, pgs_now_ns() + DRAIN_NS);
    if (!s->drain_counted)
        atomic_fetch_sub(&drains_running, 1);
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
        mark_broken(c, "connection lost");
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
static void watch_socket(pgspout_stream *s, int events)
{
    if (s->epfd < 0 || s->conn == NULL || events == s->sock_watched)
        return;
    struct epoll_event ev = {.events = (uint32_t)events};
    int op = !events ? EPOLL_CTL_DEL : s->sock_watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(s->epfd, op, PQsocket(s->conn->pg), &ev) == 0)
        s->sock_watched = events;
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

/* The calling thread's interrupt hook stopped a wait: cancel the server
 * query; the stream ends cancelled and keeps returning EINTR. */
static int interrupted(pgspout_stream *s)
{
    set_error(s, "57014", "interrupted after %llu rows; the server query was cancelled",
              (unsigned long long)(LOAD(s->delivered_base) + (uint64_t)LOAD(s->pos)));
    return fail(s, PGSPOUT_EINTR, PGSPOUT_STATE_CANCELLED, -1);
}

/* After pgspout_stream_cancel's request reached the server, a non-blocking
 * caller (an event loop) reads what is left of the statement without
 * waiting: AGAIN while the server has more to send; 0 when the statement is
 * over, or when the blocking way has to finish it (fail's stop_server: a
 * second cancel, a bounded drain), past DRAIN_NS or on a lost connection. */
static int cancel_drain(pgspout_stream *s)
{
    pgspout_conn *c = s->conn;
    if (c == NULL || s->server_done || !LOAD(s->cancel_sent) || !pgs_conn_owned(c))
        return 0;
    int64_t now = pgs_now_ns();
    if (s->drain_until == 0)
        s->drain_until = now + DRAIN_NS;
    else if (now >= s->drain_until)
        return 0;
    int d = drain_step(c, &s->drain_saw);
    if (d == 0) {
        watch_socket(s, EPOLLIN);
        s->wait_until = s->drain_until;
        return PGSPOUT_AGAIN;
    }
    if (d > 0) {
        s->server_done = 1;
        savepoint_end(s, s->drain_saw != 0);
    }
    return 0;
}

/* Cancel, deadline, pause and throttle, checked whenever the pump is about to
 * read or wait. 0 = go on reading; RETRY = re-check; else a code to return. */
static int control(pgspout_stream *s, int nonblock)
{
    if (LOAD(s->cancel_req)) {
        if (nonblock && cancel_drain(s) == PGSPOUT_AGAIN)
            return PGSPOUT_AGAIN;
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
            pgs_log_ex(PGSPOUT_LOG_INFO, s->opt.label, NULL, NULL,
                       "pause_timeout of %lld ms reached, resuming",
                       (long long)s->opt.pause_timeout_ms);
            do_resume(s, now);
            return RETRY;
        }
        s->wait_until = min_deadline(pdl, s->deadline);
        if (nonblock) {
            watch_socket(s, 0);
            return PGSPOUT_PAUSED;
        }
        if (pgs_wait(-1, s->wake.fd, s->wait_until) == PGS_WAIT_INTERRUPTED)
            return interrupted(s);
        pgs_wake_drain(&s->wake);
        return RETRY;
    }
    if (s->throttle_until > now) {
        s->wait_until = min_deadline(s->throttle_until, s->deadline);
        if (nonblock) {
            watch_socket(s, 0);
            return PGSPOUT_AGAIN;
        }
        if (pgs_wait(-1, s->wake.fd, s->wait_until) == PGS_WAIT_INTERRUPTED)
            return interrupted(s);
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
 * ADD_FULL when the chunk filled first, its bytes or its row target (res becomes the
 * carry), or PGSPOUT_ENOMEM / PGSPOUT_EMEMORY (res is cleared, the error
 * set). A row costs its values, its field table and its index entry. */
static int add_result(pgspout_stream *s, PGresult *res, uint64_t *kept_total)
{
    int n = PQntuples(res), ncols = s->ncols, rc = 0;
    int i = res == s->carry ? s->carry_idx : 0;
    s->carry = NULL;
    int want = s->nrows + (n - i), lim = rows_limit(s);
    if (reserve_rows(s, want < lim ? want : lim) != 0) {
        PQclear(res);
        set_error(s, "", "out of memory");
        return PGSPOUT_ENOMEM;
    }
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
        size_t index = (size_t)(s->nrows + 1) * sizeof(pgspout_row);
        if (s->arena_used + need > s->arena_cap || s->arena_used + need + index > s->target_bytes ||
            s->nrows >= s->cap || s->nrows >= s->row_target) {
            if (s->nrows > 0) { /* chunk full: the rest waits for the next one */
                s->carry = res;
                s->carry_idx = i;
                if (s->arena_cap < s->target_bytes && s->arena_used + need > s->arena_cap)
                    s->grow_arena = 1;
                rc = ADD_FULL;
                goto out;
            }
            if (need + index > s->fail_bytes) {
                set_error(s, "53200",
                          "max_memory of %lld bytes exceeded: a row needs %zu bytes "
                          "(memory_fail %.2f)",
                          (long long)s->opt.max_memory, need + index, s->opt.memory_fail);
                PQclear(res);
                rc = PGSPOUT_EMEMORY;
                goto out;
            }
        }
        if (s->arena_used + need > s->arena_cap) {
            /* one row larger than the arena, alone in its chunk: make room
             * for it within memory_fail, giving back a large index first */
            if (need + (size_t)s->cap * sizeof(pgspout_row) > s->fail_bytes && s->cap > 1) {
                pgspout_row *one = realloc(s->rows, sizeof *one);
                if (one != NULL)
                    s->rows = one, s->cap = 1;
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
            if (need + index > s->warn_bytes && !s->warned) {
                s->warned = 1;
                if (s->metrics)
                    pgs_metrics_memory_warning(s->metrics);
                pgs_log_ex(PGSPOUT_LOG_WARNING, s->opt.label, NULL, NULL,
                           "a row of %zu bytes is over memory_warn (%.2f of max_memory %lld)",
                           need + index, s->opt.memory_warn, (long long)s->opt.max_memory);
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
            s->limit_more = i + 1 < n; /* rows of this result cut off */
            break;
        }
    }
    PQclear(res);
out:
    ADD(s->rows_received, received);
    ADD(s->rows_filtered, filtered);
    ADD(s->bytes_received, bytes);
    STORE(s->buffered_bytes, held_bytes(s));
    if (held_bytes(s) > LOAD(s->peak_buffered))
        STORE(s->peak_buffered, held_bytes(s));
    return rc;
}

/* The chunk was read: counters, metrics, throttle, adaptive size, progress. */
static void chunk_done(pgspout_stream *s, int64_t fill_start, int waited)
{
    int64_t now = pgs_now_ns();
    pgs_conn_drop_notifies(s->conn);
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

/* The server finished the stream's statement (PQgetResult gave NULL). */
static void statement_done(pgspout_stream *s)
{
    pgspout_conn *c = s->conn;
    s->server_done = 1;
    savepoint_end(s, 0);
    pgs_conn_drop_notifies(c);
    if (c->statement_timeout_in_tx && strncmp(s->cmd_tag, "ROLLBACK", 8) == 0)
        c->statement_timeout_ms = -1; /* it may have undone a SET of ours */
    else if (strcmp(s->cmd_tag, "COMMIT") == 0)
        c->statement_timeout_in_tx = 0; /* ... or made it the session's */
    if (s->commits && strcmp(s->cmd_tag, "ROLLBACK") == 0)
        pgs_log_ex(PGSPOUT_LOG_WARNING, s->opt.label, NULL, NULL,
                   "COMMIT ended in ROLLBACK (the transaction had failed)");
}

/* ----------------------------------------------- opening without waiting */

/* pgspout_stream_start: the steps of pgspout_stream_open, run by the pump
 * one at a time without waiting, so that an event loop can drive them. */
enum {
    OPEN_TIMEOUT = 1,
    OPEN_SAVEPOINT,
    OPEN_PREPARE, /* and describe: one pipeline */
    OPEN_TYPES,
    OPEN_QUERY,
    OPEN_FLUSH
};

struct pgs_opening {
    int step;                   /* OPEN_*: running (sent) or next */
    int sent;                   /* the step's message is on its way */
    int failed;                 /* ... and a result of it was not COMMAND_OK */
    PGTransactionStatusType ts; /* the session's when the stream started */
    int savepoint;              /* run under a savepoint (as pgspout_stream_open) */
    int64_t timeout_ms;         /* OPEN_TIMEOUT: the statement_timeout sent */
    utility u;
    described d;
    char util_sql[64];
    char *sql;
    int nparams;
    char **params; /* copies of the caller's, in the same allocation */
};

static int64_t libpq_chunk_rows(const pgspout_stream *s, int64_t target);

static void opening_free(pgspout_stream *s)
{
    free(s->opening);
    s->opening = NULL;
}

/* The open failed with code: end the stream as pgspout_stream_open does. */
static int open_failed(pgspout_stream *s, int code)
{
    pgspout_conn *c = s->conn;
    opening_free(s);
    if (code == PGSPOUT_ECONN) {
        if (s->err == NULL)
            set_error(s, "08006", "connection lost while opening the stream: %s",
                      PQerrorMessage(c->pg));
        if (!c->broken)
            mark_broken(c, "connection lost while opening the stream");
        s->server_done = 1;
    }
    if (code == PGSPOUT_ESQL)
        savepoint_end(s, 0); /* as a refused query ends: the transaction aborted */
    if (code == PGSPOUT_ENOMEM) {
        set_error(s, "", "out of memory while looking up the columns' types");
        savepoint_end(s, 1);
    }
    return fail(s, code, PGSPOUT_STATE_FAILED, -1);
}

/* Run the opening steps as far as they go without waiting: PGSPOUT_OK once
 * the query is sent, AGAIN to wait for the socket (readable; writable too
 * when *want_write), or the code the stream ended with. */
static int open_step(pgspout_stream *s, int *want_write)
{
    struct pgs_opening *op = s->opening;
    pgspout_conn *c = s->conn;
    PGconn *pg = c->pg;
    *want_write = 0;
    for (;;) {
        if (op->sent) {
            int rc;
            if (op->step == OPEN_FLUSH) {
                int f = PQflush(pg);
                *want_write = f > 0;
                rc = f < 0 || !PQconsumeInput(pg) ? PGSPOUT_ECONN
                     : f > 0                      ? PGSPOUT_AGAIN
                                                  : PGSPOUT_OK;
            } else if (op->step == OPEN_PREPARE) {
                rc = await_step(c, want_write, &op->failed, described_result, &op->d);
            } else if (op->step == OPEN_TYPES) {
                rc = await_step(c, want_write, &op->failed, types_result, s);
                if (rc == PGSPOUT_OK && !op->failed && s->ndesc < 0)
                    rc = PGSPOUT_ENOMEM;
            } else {
                rc = await_step(c, want_write, &op->failed, utility_result, &op->u);
            }
            if (rc == PGSPOUT_AGAIN)
                return rc;
            if (rc == PGSPOUT_OK && op->failed)
                rc = PGSPOUT_ESQL;
            op->sent = 0;
            if (op->step == OPEN_TIMEOUT) {
                c->statement_timeout_ms = rc == PGSPOUT_OK ? op->timeout_ms : -1;
                c->statement_timeout_in_tx = op->ts == PQTRANS_INTRANS;
            } else if (op->step == OPEN_SAVEPOINT) {
                s->savepoint = rc == PGSPOUT_OK;
            } else if (op->step == OPEN_PREPARE) {
                s->unnamed = rc == PGSPOUT_OK;
            }
            if (op->step != OPEN_FLUSH)
                s->server_done = 1; /* the statement is over */
            if (rc != PGSPOUT_OK)
                return open_failed(s, rc);
            if (op->step == OPEN_FLUSH) {
                opening_free(s);
                watch_socket(s, 0); /* the pump watches what it needs */
                return PGSPOUT_OK;
            }
            op->step++;
            continue;
        }
        int sent = 0;
        switch (op->step) {
        case OPEN_TIMEOUT: {
            /* as apply_statement_timeout */
            if (c->statement_timeout_in_tx && op->ts == PQTRANS_IDLE) {
                c->statement_timeout_ms = -1;
                c->statement_timeout_in_tx = 0;
            }
            int64_t want = s->opt.statement_timeout_ms;
            if (want == c->statement_timeout_ms || op->ts == PQTRANS_INERROR) {
                op->step++;
                continue;
            }
            op->timeout_ms = want;
            if (want > 0)
                snprintf(op->util_sql, sizeof op->util_sql, "SET statement_timeout = %lld",
                         (long long)want);
            else
                snprintf(op->util_sql, sizeof op->util_sql, "RESET statement_timeout");
            op->u = (utility){op->util_sql, s};
            sent = PQsendQuery(pg, op->util_sql);
            break;
        }
        case OPEN_SAVEPOINT:
            if (!op->savepoint) {
                op->step++;
                continue;
            }
            snprintf(op->util_sql, sizeof op->util_sql, "SAVEPOINT " SAVEPOINT_NAME);
            op->u = (utility){op->util_sql, s};
            sent = PQsendQuery(pg, op->util_sql);
            break;
        case OPEN_PREPARE:
            if ((!s->opt.arrow && !s->opt.json) || described_before(s, op->sql, op->nparams)) {
                op->step = OPEN_QUERY;
                continue;
            }
            s->binary = 0;
            op->d = (described){s, &s->binary};
            sent = send_describe(c, op->sql, op->nparams);
            break;
        case OPEN_TYPES: {
            char *sql = NULL;
            int rc = s->opt.arrow ? PGSPOUT_OK : types_query(s, &sql);
            if (rc != PGSPOUT_OK)
                return open_failed(s, rc);
            if (sql == NULL) {
                op->step++;
                continue;
            }
            sent = PQsendQuery(pg, sql);
            free(sql);
            break;
        }
        default: { /* OPEN_QUERY */
            const char *const *pv = (const char *const *)op->params;
            int rc = json_wrap(s, op->sql);
            if (rc != PGSPOUT_OK)
                return open_failed(s, rc);
            described_keep(s, op->sql, op->nparams);
            sent = s->unnamed && s->json_sql == NULL /* as pgspout_stream_open */
                       ? PQsendQueryPrepared(pg, "", op->nparams, pv, NULL, NULL, s->binary)
                       : PQsendQueryParams(pg, s->json_sql ? s->json_sql : op->sql, op->nparams,
                                           NULL, pv, NULL, NULL, 0);
            if (!sent) {
                set_error(s, "", "could not send the query: %s", PQerrorMessage(pg));
                if (PQstatus(pg) != CONNECTION_OK)
                    mark_broken(c, "could not send the query");
                return open_failed(s, c->broken ? PGSPOUT_ECONN : PGSPOUT_EINTERNAL);
            }
            s->server_done = 0;
            if (!pgs_set_row_mode(pg, (int)libpq_chunk_rows(s, LOAD(s->chunk_target)))) {
                set_error(s, "", "could not switch libpq to %s mode", pgspout_transport());
                return open_failed(s, PGSPOUT_EINTERNAL);
            }
            op->step = OPEN_FLUSH;
            op->sent = 1;
            continue;
        }
        }
        if (!sent) {
            set_error(s, "08006", "could not send \"%s\": %s",
                      op->step == OPEN_PREPARE ? "the statement"
                      : op->step == OPEN_TYPES ? "the types query"
                                               : op->util_sql,
                      PQerrorMessage(pg));
            return open_failed(s, PGSPOUT_ECONN);
        }
        s->server_done = 0;
        op->sent = 1;
        op->failed = 0;
    }
}

/* Drive the opening steps: without waiting (nonblock: AGAIN with the socket
 * watched as the step needs), or waiting as pgspout_stream_open does.
 * PGSPOUT_OK once the query is sent, else the code to return. */
static int open_drive(pgspout_stream *s, int nonblock)
{
    if (nonblock)
        pgs_wake_drain(&s->wake);
    if (!pgs_conn_owned(s->conn)) { /* as fill: a fork child sends nothing */
        opening_free(s);
        set_error(s, "",
                  "the connection belongs to the process that opened it (this is a fork "
                  "child); open a new connection here");
        s->server_done = 1;
        stream_end(s, PGSPOUT_STATE_FAILED, PGSPOUT_ECONN);
        return PGSPOUT_ECONN;
    }
    for (;;) {
        if (LOAD(s->cancel_req)) {
            if (nonblock && cancel_drain(s) == PGSPOUT_AGAIN)
                return PGSPOUT_AGAIN;
            opening_free(s);
            set_error(s, "57014", "stream cancelled by the caller while opening");
            if (s->savepoint && s->server_done)
                savepoint_end(s, 1);
            return fail(s, PGSPOUT_ECANCELLED, PGSPOUT_STATE_CANCELLED, -1);
        }
        if (s->deadline && pgs_now_ns() >= s->deadline) {
            opening_free(s);
            set_error(s, "", "timeout of %lld ms exceeded while opening the stream",
                      (long long)s->opt.timeout_ms);
            if (s->savepoint && s->server_done)
                savepoint_end(s, 1);
            return fail(s, PGSPOUT_ETIMEOUT, PGSPOUT_STATE_FAILED, PGS_LIMIT_TIMEOUT);
        }
        int want_write = 0;
        int rc = open_step(s, &want_write);
        if (rc != PGSPOUT_AGAIN)
            return rc;
        if (nonblock) {
            watch_socket(s, EPOLLIN | (want_write ? EPOLLOUT : 0));
            s->wait_until = s->deadline;
            return PGSPOUT_AGAIN;
        }
        int w = pgs_wait_rw(PQsocket(s->conn->pg), want_write, s->wake.fd, s->deadline);
        if (w == PGS_WAIT_INTERRUPTED) {
            opening_free(s);
            return interrupted(s);
        }
        if (w < 0) {
            opening_free(s);
            return fail_conn(s);
        }
        if (w & PGS_WAIT_WAKE)
            pgs_wake_drain(&s->wake);
    }
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
    if (s->opening) {
        int rc = open_drive(s, nonblock);
        if (rc != PGSPOUT_OK)
            return rc;
    }
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
    s->row_target = target; /* a chunked result past it is carried */
    if (s->arena_cap == 0 || s->grow_arena || s->arena_cap > s->target_bytes) {
        /* the arena is empty here; one larger than the chunk budget (left by
         * a single big row) goes back to the budget */
        size_t cap = s->arena_cap ? s->arena_cap * 2 : 65536;
        if (cap > s->target_bytes)
            cap = s->target_bytes;
        if (cap != s->arena_cap) {
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
        for (;;) {
            if (s->opt.max_rows && kept_total >= (uint64_t)s->opt.max_rows) {
                /* limited only if the server had more to send; checked
                 * before taking anything more, a carried row included */
                int more = s->limit_more || s->carry != NULL;
                drop_carry(s);
                if (!s->server_done)
                    more |= stop_server(s) != 0;
                s->limit_reason = more ? PGS_LIMIT_ROWS : -1;
                s->pend_state = more ? PGSPOUT_STATE_LIMITED : PGSPOUT_STATE_DONE;
                s->pend_code = PGSPOUT_DONE;
                break;
            }
            if (s->nrows >= target || held_bytes(s) >= s->target_bytes)
                break;
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
                        watch_socket(s, EPOLLIN);
                        return PGSPOUT_AGAIN;
                    }
                }
                if (s->nrows > 0)
                    break;
                int64_t t0 = pgs_now_ns();
                int w = pgs_wait(PQsocket(pg), s->wake.fd, s->deadline);
                if (w == PGS_WAIT_INTERRUPTED)
                    return interrupted(s);
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
                statement_done(s);
                break;
            }
            switch ((int)PQresultStatus(res)) { /* int: older enums lack a chunk */
            case PGRES_SINGLE_TUPLE:
            case PGS_TUPLES_CHUNK:
                if (s->meta == NULL && set_meta(s, res) != 0) {
                    PQclear(res);
                    set_error(s, "", "out of memory");
                    return fail(s, PGSPOUT_ENOMEM, PGSPOUT_STATE_FAILED, -1);
                }
                /* libpq 18 puts the command tag on the last, partial chunk
                 * and none on the empty TUPLES_OK after it */
                if (*PQcmdStatus(res))
                    snprintf(s->cmd_tag, sizeof s->cmd_tag, "%s", PQcmdStatus(res));
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
                if (*PQcmdStatus(res))
                    snprintf(s->cmd_tag, sizeof s->cmd_tag, "%s", PQcmdStatus(res));
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
                if (drain(s->conn, pgs_now_ns() + DRAIN_NS) < 0)
                    mark_broken(s->conn, "connection lost while skipping a COPY");
                s->server_done = 1;
                savepoint_end(s, 0);
                break;
            default: /* PGRES_FATAL_ERROR, PGRES_BAD_RESPONSE, ... */
                set_sql_error(s, res);
                PQclear(res);
                s->pend_state = PGSPOUT_STATE_FAILED;
                s->pend_code = PGSPOUT_ESQL;
                if (drain(s->conn, pgs_now_ns() + DRAIN_NS) < 0 || PQstatus(pg) != CONNECTION_OK) {
                    /* e.g. 57P01 from pg_terminate_backend: the connection is
                     * gone, which is what the caller must act on; the
                     * SQLSTATE stays readable */
                    mark_broken(s->conn, "connection lost after a server error");
                    s->pend_code = PGSPOUT_ECONN;
                }
                s->server_done = 1;
                savepoint_end(s, 0);
                break;
            }
            if (s->server_done || s->carry)
                break;
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
    else if (what && code == PGSPOUT_EINTR)
        set_error(s, "57014", "interrupted while %s", what);
    else if (what && code == PGSPOUT_ECONN)
        set_error(s, "08006", "connection lost while %s: %s", what,
                  s->conn->err ? s->conn->err : "");
    if (code == PGSPOUT_ETIMEOUT)
        s->limit_reason = PGS_LIMIT_TIMEOUT;
    s->server_done = 1;
    own_tx_end(s);
    stream_end(s, code == PGSPOUT_EINTR ? PGSPOUT_STATE_CANCELLED : PGSPOUT_STATE_FAILED, code);
    return code;
}

/* Bring the session's statement_timeout to what this stream asks for: SET
 * to its value, or RESET to the session's own when it asks for none and an
 * earlier stream had set one. A SET inside a transaction lasts only if the
 * transaction commits, so once that transaction ended (or a ROLLBACK ran in
 * it: statement_done) the value on the server is unknown and the next
 * stream sets it again. Nothing is sent inside an aborted transaction: the
 * server would refuse it, and only ROLLBACK can run there anyway. */
static int apply_statement_timeout(pgspout_stream *s, PGTransactionStatusType ts)
{
    pgspout_conn *c = s->conn;
    if (c->statement_timeout_in_tx && ts == PQTRANS_IDLE) {
        c->statement_timeout_ms = -1;
        c->statement_timeout_in_tx = 0;
    }
    int64_t want = s->opt.statement_timeout_ms;
    if (want == c->statement_timeout_ms || ts == PQTRANS_INERROR)
        return PGSPOUT_OK;
    char sql[64] = "RESET statement_timeout";
    if (want > 0)
        snprintf(sql, sizeof sql, "SET statement_timeout = %lld", (long long)want);
    int rc = exec_utility(c, sql, s->deadline, s);
    c->statement_timeout_ms = rc == PGSPOUT_OK ? want : -1;
    c->statement_timeout_in_tx = ts == PQTRANS_INTRANS;
    return rc;
}

/* Skip white space and comments (-- to the end of the line, nested C-style). */
static const char *skip_blank(const char *p)
{
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 0;
            do {
                if (p[0] == '/' && p[1] == '*')
                    depth++, p += 2;
                else if (p[0] == '*' && p[1] == '/')
                    depth--, p += 2;
                else
                    p++;
            } while (depth > 0 && *p);
        } else {
            return p;
        }
    }
}

/* 1 if p starts with keyword w (any case) as a whole word; *end after it. */
static int keyword(const char *p, const char *w, const char **end)
{
    size_t n = strlen(w);
    if (strncasecmp(p, w, n) != 0)
        return 0;
    char c = p[n];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
        c == '$' || (unsigned char)c >= 0x80)
        return 0;
    *end = skip_blank(p + n);
    return 1;
}

enum { TXC_NONE, TXC_CONTROL, TXC_COMMIT };

/* Is sql a transaction control statement (by its leading keywords)? */
static int tx_control(const char *sql)
{
    static const char *const control[] = {"begin", "start",   "rollback",
                                          "abort", "release", "savepoint"};
    const char *p = skip_blank(sql), *q;
    if (keyword(p, "commit", &q) || keyword(p, "end", &q))
        return TXC_COMMIT;
    for (size_t i = 0; i < sizeof control / sizeof control[0]; i++)
        if (keyword(p, control[i], &q))
            return TXC_CONTROL;
    if (keyword(p, "prepare", &q) && keyword(q, "transaction", &q))
        return TXC_CONTROL;
    if (keyword(p, "set", &q) && (keyword(q, "transaction", &q) ||
                                  (keyword(q, "session", &q) && keyword(q, "characteristics", &q))))
        return TXC_CONTROL;
    return TXC_NONE;
}

/* Rows per result in libpq's chunked-rows mode, which holds rows back until
 * a chunk is full or the result ends: no more than the stream's first chunk
 * takes, nor than max_rows lets through, nor than a max_rate chunk (the
 * pump's own cut), so that those rows are not waited for in vain. libpq
 * holds that many rows outside what max_memory counts (single-row mode:
 * one); the README says so. */
static int64_t libpq_chunk_rows(const pgspout_stream *s, int64_t target)
{
    if (s->opt.max_rows > 0 && s->opt.max_rows < target)
        target = s->opt.max_rows;
    if (s->opt.max_rate > 0 && s->opt.max_rate / 10 < (double)target)
        target = s->opt.max_rate / 10 < 1 ? 1 : (int64_t)(s->opt.max_rate / 10);
    return target;
}

/* What pgspout_stream_open and _start share: the checks, and a stream
 * registered on conn (*out) whose statement is not sent yet. */
static int stream_new(pgspout_conn *conn, const char *sql, int nparams, const char *const *params,
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
    if (opts && opts->memory_fail < opts->memory_warn) {
        pgs_conn_set_error(conn, "memory_fail (%g) is below memory_warn (%g)", opts->memory_fail,
                           opts->memory_warn);
        return PGSPOUT_EVALUE;
    }
    if (opts && opts->chunk_rows_min > opts->chunk_rows_max) {
        pgs_conn_set_error(conn, "chunk_rows_min (%lld) is larger than chunk_rows_max (%lld)",
                           (long long)opts->chunk_rows_min, (long long)opts->chunk_rows_max);
        return PGSPOUT_EVALUE;
    }
    if (opts && opts->snapshot[0] != '\0') {
        if (tx_control(sql) != TXC_NONE) {
            pgs_conn_set_error(conn, "option snapshot: a transaction control statement cannot "
                                     "run in the snapshot's transaction");
            return PGSPOUT_EVALUE;
        }
        if (PQtransactionStatus(conn->pg) != PQTRANS_IDLE) {
            pgs_conn_set_error(conn, "option snapshot: the connection is inside a transaction; "
                                     "a stream that imports a snapshot starts its own");
            return PGSPOUT_ESTATE;
        }
    }
    pgspout_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PGSPOUT_ENOMEM;
    if (opts)
        s->opt = *opts;
    else
        pgs_options_defaults(&s->opt);
    s->limit_reason = -1;
    s->json_unresolved = -1;
    s->desc_entry = -1;
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
    /* A chunk closes at chunk_bytes, or at memory_warn, or at half of
     * memory_fail, whichever is smallest: values and row index each get at
     * most that much room, so together they stay within memory_fail. */
    s->target_bytes = s->fail_bytes / 2;
    if (s->warn_bytes < s->target_bytes)
        s->target_bytes = s->warn_bytes;
    if ((uint64_t)s->opt.chunk_bytes < s->target_bytes)
        s->target_bytes = (size_t)s->opt.chunk_bytes;
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

    return PGSPOUT_OK;
}

int pgspout_stream_open(pgspout_conn *conn, const char *sql, int nparams, const char *const *params,
                        const pgspout_options *opts, pgspout_stream **out)
{
    int rc0 = stream_new(conn, sql, nparams, params, opts, out);
    if (rc0 != PGSPOUT_OK)
        return rc0;
    pgspout_stream *s = *out;
    int64_t target0 = LOAD(s->chunk_target);
    PGTransactionStatusType ts = PQtransactionStatus(conn->pg);
    int txc = tx_control(sql);
    s->commits = txc == TXC_COMMIT;
    int rc = apply_statement_timeout(s, ts);
    if (rc == PGSPOUT_OK && s->opt.snapshot[0] != '\0') {
        /* the id is hex digits and dashes (options.c): SET TRANSACTION
         * SNAPSHOT takes no parameter, so it goes as a literal */
        char begin[128 + PGS_SNAPSHOT_MAX];
        snprintf(begin, sizeof begin,
                 "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '%s'",
                 s->opt.snapshot);
        s->own_tx = 1;
        rc = exec_utility(conn, begin, s->deadline, s);
        if (rc == PGSPOUT_ESQL) {
            char *why = s->err ? strdup(s->err) : NULL;
            char state[sizeof s->sqlstate];
            memcpy(state, s->sqlstate, sizeof state);
            set_error(s, state,
                      "could not import snapshot %s (%s); the transaction that exported it "
                      "must stay open while streams import it",
                      s->opt.snapshot, why ? why : "refused");
            free(why);
            return open_fail(s, rc, NULL);
        }
    }
    if (rc == PGSPOUT_OK && ts == PQTRANS_INTRANS && txc == TXC_NONE) {
        rc = exec_utility(conn, "SAVEPOINT " SAVEPOINT_NAME, s->deadline, s);
        s->savepoint = rc == PGSPOUT_OK;
    }
    int prepared = s->opt.arrow || s->opt.binary || s->opt.json;
    if (rc == PGSPOUT_OK && prepared && !described_before(s, sql, nparams)) {
        rc = describe(s, sql, nparams, &s->binary);
        if (rc == PGSPOUT_OK && !s->opt.arrow && !s->opt.binary)
            rc = lookup_types(s);
        if (rc == PGSPOUT_OK)
            rc = json_wrap(s, sql);
        if (rc == PGSPOUT_OK)
            described_keep(s, sql, nparams);
        if (rc == PGSPOUT_ESQL) { /* as a refused query ends: the transaction aborted */
            s->server_done = 1;
            savepoint_end(s, 0);
            return open_fail(s, rc, NULL);
        }
    }
    if (rc == PGSPOUT_ENOMEM) {
        set_error(s, "", "out of memory while looking up the columns' types");
        s->server_done = 1;
        savepoint_end(s, 1);
        return open_fail(s, rc, NULL);
    }
    if (rc != PGSPOUT_OK)
        return open_fail(s, rc, "preparing the stream");
    /* The pool's user gives the connection back after this stream: its
     * reset follows the statement in one pipeline, and runs as soon as the
     * statement ends (the stream reads up to the statement's Sync). Not in
     * a transaction, which the reset would refuse, and not for a statement
     * that begins or ends one. */
    int with_reset = s->opt.pool_one_stream && conn->pool && txc == TXC_NONE &&
                     PQtransactionStatus(conn->pg) == PQTRANS_IDLE;
    /* the described statement, unless a catalog query replaced it or the
     * statement became a subquery (option json): then parsed again, which
     * costs no round trip */
    int sent = !with_reset || enter_pipeline(conn, 2);
    if (sent)
        sent = s->unnamed && s->json_sql == NULL
                   ? PQsendQueryPrepared(conn->pg, "", nparams, params, NULL, NULL, s->binary)
                   : PQsendQueryParams(conn->pg, s->json_sql ? s->json_sql : sql, nparams, NULL,
                                       params, NULL, NULL, 0);
    if (sent && with_reset)
        sent = PQpipelineSync(conn->pg) &&
               send_statements(conn->pg, pgs_pool_reset_sql, PGS_POOL_RESET_N);
    if (!sent) {
        set_error(s, "", "could not send the query: %s", PQerrorMessage(conn->pg));
        if (PQstatus(conn->pg) != CONNECTION_OK || with_reset) /* a pipeline half sent */
            mark_broken(conn, "could not send the query");
        return open_fail(s, conn->broken ? PGSPOUT_ECONN : PGSPOUT_EINTERNAL, NULL);
    }
    conn->reset_queued = with_reset;
    int moded = pgs_set_row_mode(conn->pg, (int)libpq_chunk_rows(s, target0));
    /* large parameters may not fit the socket at once: send them within the
     * stream's deadline; an interrupt lets the send finish (the protocol
     * cannot stop mid-message), then cancels */
    rc = flush_out(conn->pg, s->deadline);
    if (rc == PGSPOUT_EINTR) {
        pgs_interrupt_suspend();
        int flushed = flush_out(conn->pg, pgs_now_ns() + DRAIN_NS);
        pgs_interrupt_resume();
        if (flushed == PGSPOUT_OK) {
            stop_server(s);
            return open_fail(s, PGSPOUT_EINTR, "sending the query");
        }
        rc = flushed;
    }
    if (rc != PGSPOUT_OK) {
        mark_broken(conn, "could not send the query");
        return open_fail(s, rc, "sending the query");
    }
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

int pgspout_stream_start(pgspout_conn *conn, const char *sql, int nparams,
                         const char *const *params, const pgspout_options *opts,
                         pgspout_stream **out)
{
    int rc = stream_new(conn, sql, nparams, params, opts, out);
    if (rc != PGSPOUT_OK)
        return rc;
    pgspout_stream *s = *out;
    /* the SQL and the parameters are sent later: copies, in one block */
    size_t size = sizeof(struct pgs_opening) + (size_t)nparams * sizeof(char *) + strlen(sql) + 1;
    for (int i = 0; i < nparams; i++)
        size += params[i] ? strlen(params[i]) + 1 : 0;
    struct pgs_opening *op = calloc(1, size);
    if (op == NULL) { /* as any ENOMEM before the start: no stream */
        s->server_done = 1;
        stream_end(s, PGSPOUT_STATE_FAILED, PGSPOUT_ENOMEM);
        pgspout_stream_close(s);
        *out = NULL;
        return PGSPOUT_ENOMEM;
    }
    op->params = (char **)(void *)(op + 1);
    char *w = (char *)(op->params + nparams);
    op->nparams = nparams;
    for (int i = 0; i < nparams; i++) {
        if (params[i] == NULL)
            continue;
        size_t n = strlen(params[i]) + 1;
        op->params[i] = memcpy(w, params[i], n);
        w += n;
    }
    op->sql = memcpy(w, sql, strlen(sql) + 1);
    op->ts = PQtransactionStatus(conn->pg);
    int txc = tx_control(sql);
    s->commits = txc == TXC_COMMIT;
    op->savepoint = op->ts == PQTRANS_INTRANS && txc == TXC_NONE;
    op->step = OPEN_TIMEOUT;
    s->server_done = 1; /* nothing of the stream's is on the server yet */
    s->opening = op;
    return PGSPOUT_OK;
}

int pgspout_stream_poll(pgspout_stream *s)
{
    if (s == NULL)
        return PGSPOUT_EINVAL;
    if (LOAD(s->pos) < s->nrows && !LOAD(s->cancel_req))
        return PGSPOUT_OK;
    return fill(s, 1);
}

/* Rows of a stream opened with option arrow go through pgspout_stream_arrow
 * only (they may be binary): ESTATE for anyone else. */
static int arrow_only(pgspout_stream *s)
{
    if (s->err == NULL)
        set_error(s, "",
                  "the stream was opened with option arrow: read it through "
                  "pgspout_stream_arrow");
    return PGSPOUT_ESTATE;
}

int pgspout_stream_next(pgspout_stream *s, const pgspout_row **row)
{
    if (s == NULL || row == NULL)
        return PGSPOUT_EINVAL;
    if (s->opt.arrow)
        return arrow_only(s);
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
    if (s == NULL || chunk == NULL || (flags & ~(PGSPOUT_NONBLOCK | PGSPOUT_HANDOUT)))
        return PGSPOUT_EINVAL;
    if (s->opt.arrow)
        return arrow_only(s);
    return pgs_stream_next_chunk(s, flags, chunk);
}

int pgs_stream_next_chunk(pgspout_stream *s, int flags, const pgspout_chunk **chunk)
{
    int p = LOAD(s->pos);
    if (p >= s->nrows || LOAD(s->cancel_req)) {
        int rc = fill(s, flags & PGSPOUT_NONBLOCK);
        if (rc != PGSPOUT_OK)
            return rc;
        p = 0;
    }
    s->view.rows = s->rows + p;
    s->view.n = s->nrows - p;
    if (!(flags & PGSPOUT_HANDOUT))
        STORE(s->pos, s->nrows);
    *chunk = &s->view;
    return PGSPOUT_OK;
}

int pgspout_stream_handout(pgspout_stream *s, int n)
{
    if (s == NULL || n < 0)
        return PGSPOUT_EINVAL;
    if (LOAD(s->ended)) /* the connection was closed under it */
        return s->result_code == PGSPOUT_DONE ? PGSPOUT_EINVAL : s->result_code;
    if (LOAD(s->cancel_req)) /* what pgspout_stream_next does with it */
        return fill(s, 0);
    int p = LOAD(s->pos);
    if (n > s->nrows - p)
        return PGSPOUT_EINVAL;
    STORE(s->pos, p + n);
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
    if (!s->json_trees) { /* built-in types only: no tree to look at */
        for (int c = 0; c < row->ncols; c++) {
            pgs_buf_append(b, s->json_key[c], s->json_key_len[c]);
            pgs_json_value(b, s->json_kind[c], row->data + f[c].off,
                           f[c].len < 0 ? 0 : (size_t)f[c].len, f[c].len < 0);
        }
        return pgs_buf_putc(b, '}');
    }
    for (int c = 0; c < row->ncols; c++) {
        pgs_buf_append(b, s->json_key[c], s->json_key_len[c]);
        if (s->json_kind[c] == PGS_JSON_TREE && f[c].len >= 0)
            pgs_json_tree(b, s->json_type[c], row->data + f[c].off, (size_t)f[c].len, &s->jscratch);
        else
            pgs_json_value(b, s->json_kind[c], row->data + f[c].off,
                           f[c].len < 0 ? 0 : (size_t)f[c].len, f[c].len < 0);
    }
    return pgs_buf_putc(b, '}');
}

/* Before JSON rows are rendered: ESTATE for a column whose type the stream
 * did not look up (or the catalog did not describe); a warning, once, for
 * values written as their text by design (records...). */
static int json_ready(pgspout_stream *s)
{
    if (s->json_unresolved >= 0) {
        int c = s->json_unresolved;
        if (s->desc_cached == 2)
            set_error(s, "",
                      "JSON rows: column \"%s\" has type %u since this connection described the "
                      "statement (DDL?), a type it did not look up; run it again: it is described "
                      "anew",
                      PQfname(s->meta, c), PQftype(s->meta, c));
        else if (s->jtypes.catalog)
            set_error(s, "",
                      "JSON rows: the catalog did not describe type %u of column \"%s\" (was it "
                      "dropped?)",
                      PQftype(s->meta, c), PQfname(s->meta, c));
        else
            set_error(s, "",
                      "JSON rows: column \"%s\" has type %u, which only a stream opened with "
                      "option json looks up to render as row_to_json does (Python and Lua: "
                      "rows=\"json\")",
                      PQfname(s->meta, c), PQftype(s->meta, c));
        return PGSPOUT_ESTATE;
    }
    if (s->json_warned == 0 && s->jtypes.fallback_kind != 0) {
        s->json_warned = 1;
        int k = s->jtypes.fallback_kind;
        pgs_log_ex(PGSPOUT_LOG_WARNING, s->opt.label, NULL, NULL,
                   "JSON rows: values of type %u are written as their text, not as row_to_json "
                   "renders them (%s)",
                   s->jtypes.fallback_oid,
                   k == PGS_JT_RECORD     ? "an anonymous record: the result carries neither its "
                                            "field names nor their types; cast it to a composite type"
                   : k == PGS_JT_ANYARRAY ? "anyarray: the element type is not in the result"
                                          : "a cast to json, which only the server can apply");
    }
    return PGSPOUT_OK;
}

/* A value was not of its column type's shape (the type changed between the
 * lookup and the statement?): written as its text; logged once. */
static void json_checked(pgspout_stream *s)
{
    if (s->jscratch.mismatch && s->json_warned < 2) {
        s->json_warned = 2;
        pgs_log_ex(PGSPOUT_LOG_WARNING, s->opt.label, NULL, NULL,
                   "JSON rows: a value did not have its type's shape (was the type altered while "
                   "the stream opened?); written as its text");
    }
}

/* JSON rows are rendered from text: ESTATE for a stream opened with option
 * binary, whatever format its results came in. */
static int text_only(pgspout_stream *s)
{
    if (s->opt.arrow)
        return arrow_only(s);
    if (s->err == NULL)
        set_error(s, "",
                  "the stream was opened with option binary: rows as JSON need text values "
                  "(open it without binary)");
    return PGSPOUT_ESTATE;
}

int pgspout_row_json(pgspout_stream *s, const pgspout_row *row, const char **json, size_t *len)
{
    if (s == NULL || row == NULL || json == NULL)
        return PGSPOUT_EINVAL;
    if (s->opt.arrow || s->opt.binary)
        return text_only(s);
    int rc = json_ready(s);
    if (rc != PGSPOUT_OK)
        return rc;
    pgs_buf_clear(&s->json);
    if (pgs_stream_render_row(s, row, &s->json) != 0 || s->json.oom)
        return PGSPOUT_ENOMEM;
    json_checked(s);
    *json = s->json.data;
    if (len)
        *len = s->json.len;
    return PGSPOUT_OK;
}

int pgspout_chunk_ndjson(pgspout_stream *s, const pgspout_chunk *c, const char **out, size_t *len)
{
    if (s == NULL || c == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    if (s->opt.arrow || s->opt.binary)
        return text_only(s);
    int rc = json_ready(s);
    if (rc != PGSPOUT_OK)
        return rc;
    pgs_buf_clear(&s->json);
    for (int i = 0; i < c->n; i++) {
        pgs_stream_render_row(s, &c->rows[i], &s->json);
        pgs_buf_putc(&s->json, '\n');
    }
    if (pgs_buf_reserve(&s->json, 0) != 0)
        return PGSPOUT_ENOMEM;
    json_checked(s);
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
    else {
        /* rows came before the request went: the statement was running */
        int running = LOAD(s->rows_received) > 0;
        if (!atomic_exchange(&s->cancel_req, 1) && s->conn && !s->server_done &&
            pgs_conn_send_cancel(s->conn, s->opt.cancel_timeout_ms) == 0)
            /* an event loop may drain without waiting */
            STORE(s->cancel_sent, running ? CANCEL_SENT_RUNNING : CANCEL_SENT);
    }
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

const char *pgspout_stream_command_tag(const pgspout_stream *s) { return s ? s->cmd_tag : ""; }

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

/* End the stream running on a pooled connection that goes back to its pool
 * (pool.c reset_conn). Stopping a running statement means reading what the
 * server had already sent (a streaming one: the socket buffers' worth,
 * megabytes) after the cancel: CPU work, and drains running at once share
 * the CPU, each the slower (32 clients leaving at once: 0.5-0.8 s apiece).
 * So while DRAINS_MAX drains already run, a statement still running is not
 * stopped but left: the stream ends (closed) and the caller closes the
 * connection instead of resetting it, which ends the server's backend
 * (its next write fails). Returns 1 then, else 0 (detached as usual, or
 * the connection broken). */
int pgs_stream_release(pgspout_stream *s)
{
    pgspout_conn *c = s->conn;
    if (LOAD(s->ended) || c == NULL || s->server_done || !pgs_conn_owned(c)) {
        pgs_stream_detach(s);
        return 0;
    }
    /* a place among the drains, taken now: the cancel before the drain
     * takes a while, and releases at once must not all see room */
    int n = atomic_load(&drains_running);
    while (n < DRAINS_MAX && !atomic_compare_exchange_weak(&drains_running, &n, n + 1))
        ;
    if (n < DRAINS_MAX) {
        s->drain_counted = 1;
        pgs_stream_detach(s);
        atomic_fetch_sub(&drains_running, 1);
        return 0;
    }
    /* a statement that is not writing (still computing) would not see the
     * socket close: cancel it, unless pgspout_stream_cancel did already */
    if (LOAD(s->cancel_sent) != CANCEL_SENT_RUNNING)
        (void)pgs_conn_send_cancel(c, s->opt.cancel_timeout_ms);
    s->server_done = 1; /* nothing more is read: the connection is closed */
    c->broken = 1;
    release_chunk(s);
    drop_carry(s);
    set_error(s, "", "the stream's connection was closed");
    stream_end(s, PGSPOUT_STATE_CLOSED, PGSPOUT_ESTATE);
    return 1;
}

void pgspout_stream_close(pgspout_stream *s)
{
    if (s == NULL)
        return;
    pgs_arrow_detach(s);
    opening_free(s);
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
    free(s->json_type);
    pgs_jtypes_free(&s->jtypes);
    pgs_jscratch_free(&s->jscratch);
    free(s->desc_oids);
    PQclear(s->desc);
    free(s->json_sql);
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
