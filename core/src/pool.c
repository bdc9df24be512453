/* pool.c - a thread-safe pool of connections (pgspout_pool_*).
 *
 * One mutex per pool guards its lists and counts; it is never held across
 * I/O but the close of an idle connection (a Terminate message on a
 * non-blocking socket). Every thread inside a pool call is counted (out,
 * opening, waiting, calls), so pgspout_pool_close may run beside them: the
 * pool is freed by whichever thread leaves last (should_free).
 *
 * Waiters queue in arrival order. A release hands its connection straight
 * to the first waiter, and a connection closed while others wait gives the
 * first waiter a permit to open one in its place, so nobody overtakes a
 * waiter and max_size is never exceeded.
 *
 * Fork: every pool lock is taken around fork() (pthread_atfork), so the
 * child starts with consistent, unlocked pools; its first call on a pool
 * forgets the parent's connections (adopt_fork) without touching their
 * sockets (pgspout_conn_close sends its goodbye to /dev/null in a child).
 */
#include "internal.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

/* The reset at release: DISCARD ALL (outside a transaction block, so not
 * in a query string of several statements), then the extra_float_digits
 * every pgspout connection has (pgspout_connect), which its RESET ALL
 * undid: one pipeline, one round trip, about a fifth of the server's work
 * of the same ten statements in one string (0.03 ms against 0.15-0.17 ms
 * per release, pgbench, loopback; such a string runs as an implicit
 * transaction block). Either failing closes the connection. Behind a
 * registry stream's statement, the same pipeline costs no round trip
 * (option pool_one_stream: stream.c sends it, pgs_conn_finish_reset reads
 * it). */
const char *const pgs_pool_reset_sql[PGS_POOL_RESET_N] = {"DISCARD ALL",
                                                          "SET extra_float_digits = 3"};

typedef struct waiter {
    struct waiter *next;
    pgs_wake wake;
    pgspout_conn *conn; /* handed over by a release (counted out) */
    int permit;         /* a place to open a connection in (counted opening) */
} waiter;

struct pgspout_pool {
    pthread_mutex_t lock;
    char *conninfo;
    pgspout_options opt;
    pgs_pool_metrics *m;
    pgspout_conn *idle; /* most recently released first */
    int nidle, nout, nopening, nwaiting, calls;
    waiter *whead, *wtail;
    int closed, freeing;
    unsigned gen; /* the process's fork generation these counts belong to */
    uint64_t acquires, waits, timeouts, created, nclosed;
    pgspout_pool *prev, *next; /* every pool, for the fork handlers */
};

/* ------------------------------------------------------------ fork safety */

static pthread_mutex_t pools_lock = PTHREAD_MUTEX_INITIALIZER;
static pgspout_pool *pools;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_failed;

static void before_fork(void)
{
    pthread_mutex_lock(&pools_lock);
    for (pgspout_pool *p = pools; p; p = p->next)
        pthread_mutex_lock(&p->lock);
}

static void after_fork(void)
{
    for (pgspout_pool *p = pools; p; p = p->next)
        pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&pools_lock);
}

static void register_atfork(void)
{
    atfork_failed = pthread_atfork(before_fork, after_fork, after_fork) != 0;
}

static int64_t total(const pgspout_pool *p) { return p->nidle + p->nout + p->nopening; }

static void gauges(pgspout_pool *p, int idle, int out, int opening, int waiting)
{
    pgs_metrics_pool_gauges(p->m, idle, out, opening, waiting, 0);
}

static void closed_metric(pgspout_pool *p, int reason)
{
    p->nclosed++;
    pgs_metrics_pool_closed(p->m, reason);
}

/* Under the lock: in a fork child, forget what belongs to the parent. Its
 * idle connections are let go here (their sockets untouched); connections
 * out or opening belong to the parent's threads. */
static void adopt_fork(pgspout_pool *p)
{
    unsigned now = pgs_fork_generation();
    if (p->gen == now)
        return;
    p->gen = now;
    while (p->idle) {
        pgspout_conn *c = p->idle;
        p->idle = c->pool_next;
        c->pool = NULL;
        pgspout_conn_close(c); /* not owned: closes without a word to the server */
        closed_metric(p, PGS_POOL_CLOSE_FORK);
    }
    for (int i = 0; i < p->nout + p->nopening; i++)
        closed_metric(p, PGS_POOL_CLOSE_FORK);
    gauges(p, -p->nidle, -p->nout, -p->nopening, -p->nwaiting);
    p->nidle = p->nout = p->nopening = p->nwaiting = p->calls = 0;
    p->whead = p->wtail = NULL; /* their threads are not in this process */
}

/* ----------------------------------------------------------------- queue */

static waiter *dequeue(pgspout_pool *p)
{
    waiter *w = p->whead;
    if (w) {
        p->whead = w->next;
        if (p->whead == NULL)
            p->wtail = NULL;
        w->next = NULL;
    }
    return w;
}

static void unlink_waiter(pgspout_pool *p, waiter *w)
{
    waiter **pp = &p->whead, *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return; /* already handed something and dequeued */
    *pp = w->next;
    if (p->wtail == w)
        p->wtail = prev;
    w->next = NULL;
}

/* Under the lock: a place under max_size came free; the first waiter may
 * open a connection in it. */
static void slot_freed(pgspout_pool *p)
{
    if (p->whead == NULL || p->closed || total(p) >= p->opt.max_size)
        return;
    waiter *w = dequeue(p);
    w->permit = 1;
    p->nopening++;
    gauges(p, 0, 0, 1, 0);
    pgs_wake_signal(&w->wake);
}

/* Under the lock: a usable connection, not counted anywhere, goes to the
 * first waiter (counted out) or to the idle list. */
static void give_or_idle(pgspout_pool *p, pgspout_conn *c)
{
    waiter *w = dequeue(p);
    c->pool_idle_ns = pgs_now_ns();
    if (w) {
        c->pool_out = 1;
        w->conn = c;
        p->nout++;
        gauges(p, 0, 1, 0, 0);
        pgs_wake_signal(&w->wake);
        return;
    }
    c->pool_out = 0;
    c->pool_next = p->idle;
    p->idle = c;
    p->nidle++;
    gauges(p, 1, 0, 0, 0);
}

static int should_free(pgspout_pool *p)
{
    if (!p->closed || p->freeing || p->nout || p->nopening || p->nwaiting || p->calls)
        return 0;
    p->freeing = 1;
    return 1;
}

static void free_pool(pgspout_pool *p)
{
    pthread_mutex_lock(&pools_lock);
    if (p->prev)
        p->prev->next = p->next;
    else
        pools = p->next;
    if (p->next)
        p->next->prev = p->prev;
    pthread_mutex_unlock(&pools_lock);
    pthread_mutex_destroy(&p->lock);
    free(p->conninfo);
    free(p);
}

/* Unlock, and free the pool if this thread was the last inside it. */
static void leave(pgspout_pool *p)
{
    int f = should_free(p);
    pthread_mutex_unlock(&p->lock);
    if (f)
        free_pool(p);
}

/* ------------------------------------------------------------ connections */

/* Open a connection for p; the deadline (0 = none) caps connect_timeout.
 * The handle (failed or not) is marked as the pool's and out. */
static int open_conn(pgspout_pool *p, int64_t deadline, pgspout_conn **out)
{
    pgspout_options o = p->opt;
    if (deadline) {
        int64_t left = (deadline - pgs_now_ns()) / PGS_NS_PER_MS;
        if (left < 1)
            left = 1;
        if (o.connect_timeout_ms <= 0 || left < o.connect_timeout_ms)
            o.connect_timeout_ms = left;
    }
    pgspout_conn *c = NULL;
    int rc = pgspout_connect_opts(p->conninfo, &o, &c);
    if (c) {
        c->pool = p;
        c->pool_out = 1;
        if (rc == PGSPOUT_OK)
            c->pool_born_ns = pgs_now_ns();
    }
    *out = c;
    return rc;
}

/* Checkout: -1 when c may be handed out, else why it must be closed. */
static int checkout_check(const pgspout_pool *p, pgspout_conn *c, int64_t now)
{
    if (!pgs_conn_owned(c))
        return PGS_POOL_CLOSE_FORK;
    if (atomic_load(&c->cancel_failed))
        return PGS_POOL_CLOSE_CANCEL_FAILED;
    if (p->opt.max_lifetime_ms > 0 &&
        now - c->pool_born_ns >= p->opt.max_lifetime_ms * PGS_NS_PER_MS)
        return PGS_POOL_CLOSE_MAX_LIFETIME;
    if (p->opt.idle_timeout_ms > 0 &&
        now - c->pool_idle_ns >= p->opt.idle_timeout_ms * PGS_NS_PER_MS)
        return PGS_POOL_CLOSE_IDLE_TIMEOUT;
    if (c->active || !pgspout_conn_ok(c) || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return PGS_POOL_CLOSE_BROKEN;
    /* Nothing is expected on an idle connection: what is there (a backend's
     * FATAL before it exits, the end of the stream, a notification) is read
     * now, so a server-side close is seen without a round trip. */
    for (int i = 0; i < 8; i++) {
        struct pollfd pfd = {PQsocket(c->pg), POLLIN, 0};
        int r = poll(&pfd, 1, 0);
        if (r == 0)
            break;
        if (r < 0 || !PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK)
            return PGS_POOL_CLOSE_BROKEN;
        pgs_conn_drop_notifies(c);
    }
    /* a FATAL read just now (conn.c: notice_to_log) broke it */
    if (!pgspout_conn_ok(c) || PQisBusy(c->pg) || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        return PGS_POOL_CLOSE_BROKEN;
    return -1;
}

/* The reset on its own: a ROLLBACK of what is open, then the reset
 * pipeline, each within step of its start (now for the first). */
static int reset_session(pgspout_conn *c, int64_t now, int64_t step)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);
    int rc = PGSPOUT_OK;
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        rc = pgs_conn_exec(c, "ROLLBACK", now + step);
    else if (ts != PQTRANS_IDLE)
        rc = PGSPOUT_ECONN;
    if (rc == PGSPOUT_OK)
        rc = pgs_conn_exec_pipeline(c, pgs_pool_reset_sql, PGS_POOL_RESET_N, pgs_now_ns() + step);
    return rc;
}

/* Release: make c what a new connection is, or say why it must close. */
static int reset_conn(pgspout_pool *p, pgspout_conn *c, int closed)
{
    /* cancels and drains, or breaks c; or leaves the statement running
     * while other drains are busy: then c is closed */
    if (c->active && pgs_stream_release(c->active))
        return PGS_POOL_CLOSE_DISCARDED;
    if (!pgs_conn_owned(c))
        return PGS_POOL_CLOSE_FORK;
    if (atomic_load(&c->cancel_failed))
        return PGS_POOL_CLOSE_CANCEL_FAILED;
    if (!pgspout_conn_ok(c))
        return PGS_POOL_CLOSE_BROKEN;
    if (closed)
        return PGS_POOL_CLOSE_POOL_CLOSED;
    int64_t now = pgs_now_ns();
    if (p->opt.max_lifetime_ms > 0 &&
        now - c->pool_born_ns >= p->opt.max_lifetime_ms * PGS_NS_PER_MS)
        return PGS_POOL_CLOSE_MAX_LIFETIME;
    int64_t step = c->cancel_timeout_ms * PGS_NS_PER_MS;
    int rc = PGSPOUT_ESQL;   /* not reset yet */
    pgs_interrupt_suspend(); /* a cleanup: finish it whatever the caller's hook says */
    if (c->reset_queued)     /* sent behind the stream's statement */
        rc = pgs_conn_finish_reset(c, now + step);
    if (rc == PGSPOUT_ESQL) /* none queued, or the server refused it */
        rc = reset_session(c, now, step);
    pgs_interrupt_resume();
    if (rc == PGSPOUT_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        rc = PGSPOUT_EINTERNAL;
    if (rc != PGSPOUT_OK) {
        pgs_log(PGSPOUT_LOG_WARNING, "pool: closing a released connection whose reset failed: %s",
                pgspout_conn_error(c));
        return c->broken ? PGS_POOL_CLOSE_BROKEN : PGS_POOL_CLOSE_RESET_FAILED;
    }
    /* RESET ALL restored the session's own statement_timeout */
    c->statement_timeout_ms = 0;
    c->statement_timeout_in_tx = 0;
    c->notified = 0;
    free(c->err);
    c->err = NULL;
    pgs_metrics_pool_reset(p->m);
    return -1;
}

/* --------------------------------------------------------------- the API */

int pgspout_pool_new(const char *conninfo, const pgspout_options *opts, pgspout_pool **out)
{
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (conninfo == NULL)
        return PGSPOUT_EINVAL;
    pgspout_options o;
    if (opts)
        o = *opts;
    else
        pgs_options_defaults(&o);
    if (o.min_idle > o.max_size)
        return PGSPOUT_EVALUE;
    o.filter = NULL;
    o.progress = NULL;
    pgspout_pool *p = calloc(1, sizeof *p);
    if (p == NULL || (p->conninfo = strdup(conninfo)) == NULL) {
        free(p);
        return PGSPOUT_ENOMEM;
    }
    p->opt = o;
    p->m = pgs_metrics_pool(o.label);
    pthread_mutex_init(&p->lock, NULL);
    p->gen = pgs_fork_generation();
    pthread_once(&atfork_once, register_atfork);
    pgs_metrics_pool_gauges(p->m, 0, 0, 0, 0, o.max_size);
    pthread_mutex_lock(&pools_lock);
    p->next = pools;
    if (pools)
        pools->prev = p;
    pools = p;
    pthread_mutex_unlock(&pools_lock);
    *out = p;
    return PGSPOUT_OK;
}

/* pgspout_pool_acquire, or with idle_only pgspout_pool_acquire_idle: AGAIN
 * instead of opening a connection or waiting. */
static int acquire(pgspout_pool *p, int64_t timeout_ms, int idle_only, pgspout_conn **out)
{
    if (out)
        *out = NULL;
    if (p == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    int64_t t0 = pgs_now_ns();
    int64_t limit = timeout_ms < 0 ? p->opt.acquire_timeout_ms : timeout_ms;
    int nowait = timeout_ms == 0;
    int64_t deadline = !nowait && limit > 0 ? t0 + limit * PGS_NS_PER_MS : 0;
    int waited = 0, rc = PGSPOUT_OK, permit = 0;
    pgspout_conn *c = NULL;

    pthread_mutex_lock(&p->lock);
    adopt_fork(p);
    for (;;) {
        if (permit && p->closed) { /* closed since the permit was given */
            p->nopening--;
            gauges(p, 0, 0, -1, 0);
            rc = PGSPOUT_ESTATE;
            break;
        }
        if (idle_only && !p->closed && p->idle == NULL) {
            rc = PGSPOUT_AGAIN;
            break;
        }
        if (permit || (!p->closed && p->idle == NULL && total(p) < p->opt.max_size)) {
            if (!permit) {
                p->nopening++;
                gauges(p, 0, 0, 1, 0);
            }
            permit = 0;
            pthread_mutex_unlock(&p->lock);
            rc = open_conn(p, deadline, &c);
            pthread_mutex_lock(&p->lock);
            p->nopening--;
            gauges(p, 0, 0, -1, 0);
            if (c) {
                c->pool_gen = p->gen;
                p->nout++;
                gauges(p, 0, 1, 0, 0);
            } else {
                slot_freed(p);
            }
            if (rc == PGSPOUT_OK) {
                p->created++;
                pgs_metrics_pool_created(p->m);
            }
            break; /* the new handle, failed or not, goes to the caller */
        }
        if (p->closed) {
            rc = PGSPOUT_ESTATE;
            break;
        }
        if (p->idle) {
            c = p->idle;
            p->idle = c->pool_next;
            c->pool_next = NULL;
            c->pool_out = 1;
            p->nidle--;
            p->nout++;
            gauges(p, -1, 1, 0, 0);
        } else {
            if (nowait || (deadline && pgs_now_ns() >= deadline)) {
                rc = PGSPOUT_ETIMEOUT;
                break;
            }
            waiter w = {NULL, {-1}, NULL, 0};
            if (pgs_wake_open(&w.wake) != 0) {
                rc = PGSPOUT_ENOMEM;
                break;
            }
            if (p->wtail)
                p->wtail->next = &w;
            else
                p->whead = &w;
            p->wtail = &w;
            p->nwaiting++;
            gauges(p, 0, 0, 0, 1);
            waited = 1;
            int r = 0;
            while (!w.conn && !w.permit && !p->closed) {
                pthread_mutex_unlock(&p->lock);
                r = pgs_wait(-1, w.wake.fd, deadline);
                pthread_mutex_lock(&p->lock);
                pgs_wake_drain(&w.wake);
                if (r == 0 || r == PGS_WAIT_INTERRUPTED || r < 0)
                    break;
            }
            unlink_waiter(p, &w);
            p->nwaiting--;
            gauges(p, 0, 0, 0, -1);
            pgs_wake_close(&w.wake);
            if (w.permit) {
                permit = 1; /* counted opening by slot_freed */
                continue;
            }
            if (w.conn == NULL) { /* what it got beats why it woke */
                rc = p->closed                   ? PGSPOUT_ESTATE
                     : r == PGS_WAIT_INTERRUPTED ? PGSPOUT_EINTR
                     : r < 0                     ? PGSPOUT_EINTERNAL
                                                 : PGSPOUT_ETIMEOUT;
                break;
            }
            c = w.conn; /* counted out by give_or_idle */
        }
        /* check the connection outside the lock; it is counted out */
        pthread_mutex_unlock(&p->lock);
        int reason = checkout_check(p, c, pgs_now_ns());
        if (reason >= 0) {
            c->pool = NULL;
            pgspout_conn_close(c);
        }
        pthread_mutex_lock(&p->lock);
        if (reason < 0)
            break;
        closed_metric(p, reason);
        c = NULL;
        p->nout--;
        gauges(p, 0, -1, 0, 0);
        slot_freed(p);
    }
    if (rc == PGSPOUT_OK)
        p->acquires++;
    if (waited)
        p->waits++;
    if (rc == PGSPOUT_ETIMEOUT)
        p->timeouts++;
    if (rc != PGSPOUT_AGAIN) /* a probe that found nothing idle is no acquire */
        pgs_metrics_pool_acquire(p->m, rc == PGSPOUT_OK, waited, rc == PGSPOUT_ETIMEOUT,
                                 (double)(pgs_now_ns() - t0) / 1e9);
    *out = c;
    leave(p);
    return rc;
}

int pgspout_pool_acquire(pgspout_pool *p, int64_t timeout_ms, pgspout_conn **out)
{
    return acquire(p, timeout_ms, 0, out);
}

int pgspout_pool_acquire_idle(pgspout_pool *p, pgspout_conn **out) { return acquire(p, 0, 1, out); }

int pgspout_pool_release(pgspout_pool *p, pgspout_conn *c)
{
    if (p == NULL || c == NULL || c->pool != p)
        return PGSPOUT_EINVAL;
    pthread_mutex_lock(&p->lock);
    adopt_fork(p);
    if (!c->pool_out) {
        pthread_mutex_unlock(&p->lock);
        return PGSPOUT_EINVAL;
    }
    c->pool_out = 0;
    c->released = 0;                     /* a pgspout_conn_release of the last user is over */
    int counted = c->pool_gen == p->gen; /* else forgotten by adopt_fork */
    int closed = p->closed;
    if (counted)
        p->calls++;
    pthread_mutex_unlock(&p->lock);

    int reason = -2; /* a failed connect: never counted created, closed silently */
    if (!counted)
        reason = PGS_POOL_CLOSE_FORK;
    else if (c->pool_born_ns)
        reason = reset_conn(p, c, closed);
    if (reason != -1) {
        c->pool = NULL;
        pgspout_conn_close(c); /* a parent's socket is left alone (conn.c) */
        if (!counted)
            return PGSPOUT_OK;
    }
    pthread_mutex_lock(&p->lock);
    p->calls--;
    p->nout--;
    gauges(p, 0, -1, 0, 0);
    if (reason == -1) {
        if (p->closed) { /* closed while we reset it */
            c->pool = NULL;
            pgspout_conn_close(c);
            closed_metric(p, PGS_POOL_CLOSE_POOL_CLOSED);
        } else {
            give_or_idle(p, c);
        }
    } else {
        if (reason >= 0)
            closed_metric(p, reason);
        slot_freed(p);
    }
    leave(p);
    return PGSPOUT_OK;
}

int pgspout_pool_maintain(pgspout_pool *p)
{
    if (p == NULL)
        return PGSPOUT_EINVAL;
    pthread_mutex_lock(&p->lock);
    adopt_fork(p);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        return PGSPOUT_ESTATE;
    }
    p->calls++;
    /* expired idle connections out of the list, closed below */
    int64_t now = pgs_now_ns();
    pgspout_conn *expired = NULL, **pp = &p->idle;
    int keep = p->nidle;
    while (*pp) {
        pgspout_conn *c = *pp;
        int old = p->opt.max_lifetime_ms > 0 &&
                  now - c->pool_born_ns >= p->opt.max_lifetime_ms * PGS_NS_PER_MS;
        int idle = p->opt.idle_timeout_ms > 0 && keep > p->opt.min_idle &&
                   now - c->pool_idle_ns >= p->opt.idle_timeout_ms * PGS_NS_PER_MS;
        if (old || idle) {
            *pp = c->pool_next;
            c->pool_next = expired;
            c->pool_idle_ns = old; /* reused as the reason flag below */
            expired = c;
            keep--;
            p->nidle--;
            gauges(p, -1, 0, 0, 0);
        } else {
            pp = &c->pool_next;
        }
    }
    pthread_mutex_unlock(&p->lock);
    while (expired) {
        pgspout_conn *c = expired;
        expired = c->pool_next;
        int reason = c->pool_idle_ns ? PGS_POOL_CLOSE_MAX_LIFETIME : PGS_POOL_CLOSE_IDLE_TIMEOUT;
        c->pool = NULL;
        pgspout_conn_close(c);
        pthread_mutex_lock(&p->lock);
        closed_metric(p, reason);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    int rc = PGSPOUT_OK;
    while (!p->closed && p->nidle < p->opt.min_idle && total(p) < p->opt.max_size) {
        p->nopening++;
        gauges(p, 0, 0, 1, 0);
        pthread_mutex_unlock(&p->lock);
        pgspout_conn *c = NULL;
        rc = open_conn(p, 0, &c);
        if (rc != PGSPOUT_OK) {
            pgs_log(PGSPOUT_LOG_ERROR, "pool: could not open a connection: %s",
                    c ? pgspout_conn_error(c) : pgspout_strerror(rc));
            if (c)
                c->pool = NULL;
            pgspout_conn_close(c);
        }
        pthread_mutex_lock(&p->lock);
        p->nopening--;
        gauges(p, 0, 0, -1, 0);
        if (rc != PGSPOUT_OK) {
            slot_freed(p);
            break;
        }
        p->created++;
        pgs_metrics_pool_created(p->m);
        c->pool_gen = p->gen;
        if (p->closed) {
            c->pool = NULL;
            pgspout_conn_close(c);
            closed_metric(p, PGS_POOL_CLOSE_POOL_CLOSED);
        } else {
            give_or_idle(p, c);
        }
    }
    p->calls--;
    leave(p);
    return rc;
}

int pgspout_pool_stats_get(pgspout_pool *p, pgspout_pool_stats *st)
{
    if (p == NULL || st == NULL || st->size < sizeof(size_t))
        return PGSPOUT_EINVAL;
    pgspout_pool_stats s;
    memset(&s, 0, sizeof s);
    pthread_mutex_lock(&p->lock);
    adopt_fork(p);
    s.max_size = (int)p->opt.max_size;
    s.total = (int)total(p);
    s.idle = p->nidle;
    s.in_use = p->nout;
    s.waiting = p->nwaiting;
    s.acquires = p->acquires;
    s.waits = p->waits;
    s.timeouts = p->timeouts;
    s.created = p->created;
    s.closed = p->nclosed;
    s.acquire_timeout_ms = p->opt.acquire_timeout_ms;
    pthread_mutex_unlock(&p->lock);
    size_t n = st->size < sizeof s ? st->size : sizeof s;
    s.size = st->size;
    memcpy(st, &s, n);
    return PGSPOUT_OK;
}

void pgspout_pool_close(pgspout_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    adopt_fork(p);
    if (p->closed) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    p->closed = 1;
    pgs_metrics_pool_gauges(p->m, 0, 0, 0, 0, -p->opt.max_size);
    for (waiter *w = p->whead; w; w = w->next)
        pgs_wake_signal(&w->wake); /* each leaves the queue itself */
    while (p->idle) {
        pgspout_conn *c = p->idle;
        p->idle = c->pool_next;
        p->nidle--;
        gauges(p, -1, 0, 0, 0);
        c->pool = NULL;
        pgspout_conn_close(c);
        closed_metric(p, PGS_POOL_CLOSE_POOL_CLOSED);
    }
    leave(p);
}
