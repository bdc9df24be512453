/* conn.c - connections: connect, close, errors, cancel. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

void pgs_conn_set_error(pgspout_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pgs_set_message(&c->err, fmt, ap);
    va_end(ap);
}

/* libpq's conninfo parse errors quote pieces of the string, which may be a
 * password ('missing "=" after "secret"', a whole URI): every "quoted" text
 * becomes "..." in the copy written to out, except the keyword-shaped name
 * in 'invalid connection option "name"'. */
static void redact_quoted(const char *msg, char *out, size_t n)
{
    size_t w = 0;
    for (const char *r = msg; *r && w + 6 < n; r++) {
        out[w++] = *r;
        if (*r != '"')
            continue;
        const char *close = strchr(r + 1, '"');
        if (close == NULL)
            break;
        size_t len = (size_t)(close - r - 1);
        int keyword = r - msg >= 7 && strncmp(r - 7, "option ", 7) == 0 && len > 0 && len <= 64 &&
                      strspn(r + 1, "abcdefghijklmnopqrstuvwxyz_") == len;
        if (keyword && w + len + 2 < n) {
            memcpy(out + w, r + 1, len + 1); /* the name and its closing quote */
            w += len + 1;
        } else {
            memcpy(out + w, "...\"", 4);
            w += 4;
        }
        r = close;
    }
    out[w] = '\0';
}

/* Server notices and warnings go to the log hooks, never to stderr, with
 * the label of the stream running on the connection (arg). libpq calls this
 * on the thread reading results: the connection's owner thread.
 * An error that arrives while no query runs comes here too: a FATAL one
 * (pg_terminate_backend, a shutdown, idle_session_timeout) means the
 * backend is exiting, though its socket may stay open a while longer (the
 * exit's cleanup runs first): the connection is marked broken at once, so
 * that a pool's checkout does not hand it out in that window. */
static void notice_to_log(void *arg, const PGresult *res)
{
    pgspout_conn *c = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (c && sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
        const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        pgs_conn_set_error(c, "connection lost: the server ended the session: %s", m ? m : sev);
        c->broken = 1;
    }
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    int level = PGSPOUT_LOG_INFO; /* NOTICE, INFO, LOG */
    if (sev == NULL)
        sev = "NOTICE";
    else if (strcmp(sev, "WARNING") == 0)
        level = PGSPOUT_LOG_WARNING;
    else if (strncmp(sev, "DEBUG", 5) == 0)
        level = PGSPOUT_LOG_DEBUG;
    pgs_log_ex(level, c && c->active ? c->active->opt.label : NULL, sev, code, "server %s: %s", sev,
               msg ? msg : "");
}

/* Forks of this process, counted in the child: a connection opened before
 * the latest fork carries an older generation there. Cheaper than a getpid()
 * system call on every chunk; getpid() stays the fallback should the
 * handler fail to register. glibc unregisters it when the library is
 * unloaded. */
static _Atomic unsigned fork_gen;
static int fork_watch_failed;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void on_fork_child(void) { atomic_fetch_add(&fork_gen, 1); }
static void watch_forks(void)
{
    fork_watch_failed = pthread_atfork(NULL, NULL, on_fork_child) != 0;
}

/* Milliseconds as the whole seconds libpq wants (rounded up, at least 1). */
static void put_seconds(char *dst, size_t n, int64_t ms)
{
    int64_t s = (ms + 999) / 1000;
    snprintf(dst, n, "%lld", (long long)(s < 1 ? 1 : s));
}

int pgspout_connect(const char *conninfo, pgspout_conn **out)
{
    return pgspout_connect_opts(conninfo, NULL, out);
}

/* A detached thread for a blocking libpq call (stack_size 0: the default).
 * It takes no signals: they stay with the threads that can act on them.
 * 0, or -1 when no thread could be started. */
static int start_helper_thread(void *(*fn)(void *), void *arg, size_t stack_size)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_size)
        pthread_attr_setstacksize(&attr, stack_size);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int started = pthread_create(&t, &attr, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return started ? 0 : -1;
}

/* What PQconnectdbParams gets: conninfo first (expand_dbname), then our keys
 * override it. Owns copies of every string, so that a connect running on a
 * thread of its own can outlive the caller's arguments. */
typedef struct connect_job {
    const char *keys[10], *vals[10];
    char *conninfo;
    char connect_timeout[24], ka_idle[24], ka_int[24], ka_cnt[24], tcp_ut[24];
    char application_name[PGS_LABEL_MAX + 1];
    PGconn *pg;
    /* the threaded path (an interrupt hook is set): freed by whichever of
     * the caller and the thread lets go last */
    pthread_mutex_t mu;
    int refs, done, abandoned;
    pgs_wake wake;
} connect_job;

static void job_params(connect_job *j, const pgspout_options *opts)
{
    int n = 0;
    j->keys[n] = "dbname", j->vals[n++] = j->conninfo;
    j->keys[n] = "client_encoding", j->vals[n++] = "UTF8";
    if (opts && opts->connect_timeout_ms >= 0) {
        put_seconds(j->connect_timeout, sizeof j->connect_timeout, opts->connect_timeout_ms);
        j->keys[n] = "connect_timeout", j->vals[n++] = j->connect_timeout;
    }
    if (opts && opts->keepalives_idle_ms >= 0) {
        put_seconds(j->ka_idle, sizeof j->ka_idle, opts->keepalives_idle_ms);
        j->keys[n] = "keepalives_idle", j->vals[n++] = j->ka_idle;
    }
    if (opts && opts->keepalives_interval_ms >= 0) {
        put_seconds(j->ka_int, sizeof j->ka_int, opts->keepalives_interval_ms);
        j->keys[n] = "keepalives_interval", j->vals[n++] = j->ka_int;
    }
    if (opts && opts->keepalives_count >= 0) {
        snprintf(j->ka_cnt, sizeof j->ka_cnt, "%lld", (long long)opts->keepalives_count);
        j->keys[n] = "keepalives_count", j->vals[n++] = j->ka_cnt;
    }
    if (opts && opts->tcp_user_timeout_ms >= 0) {
        snprintf(j->tcp_ut, sizeof j->tcp_ut, "%lld", (long long)opts->tcp_user_timeout_ms);
        j->keys[n] = "tcp_user_timeout", j->vals[n++] = j->tcp_ut;
    }
    if (opts && opts->application_name[0]) {
        memcpy(j->application_name, opts->application_name, sizeof j->application_name);
        j->keys[n] = "application_name", j->vals[n++] = j->application_name;
    }
    j->keys[n] = NULL, j->vals[n] = NULL;
}

/* libpq's blocking connect, then the session setting every stream relies
 * on: exact float output whatever the role's or database's default
 * (shortest-exact on PostgreSQL >= 12, where any value >= 1 means that).
 * A failure here shows as the connection's status. */
static void job_connect(connect_job *j)
{
    j->pg = PQconnectdbParams(j->keys, j->vals, 1);
    if (j->pg && PQstatus(j->pg) == CONNECTION_OK)
        PQclear(PQexec(j->pg, "SET extra_float_digits = 3"));
}

static void job_release(connect_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left)
        return;
    if (j->abandoned && j->pg)
        PQfinish(j->pg);
    pgs_wake_close(&j->wake);
    pthread_mutex_destroy(&j->mu);
    free(j->conninfo);
    free(j);
}

static void *connect_thread(void *arg)
{
    connect_job *j = arg;
    job_connect(j);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_mutex_unlock(&j->mu);
    pgs_wake_signal(&j->wake);
    job_release(j);
    return NULL;
}

/* Connect on a thread of its own and wait for it here, where the calling
 * thread's interrupt hook can stop the wait (libpq's connect loop retries
 * after signals). 0, or -1 when interrupted: the thread then finishes the
 * connect and closes it. Without a thread to be had, connects here. */
static int connect_interruptible(connect_job *j)
{
    if (pgs_wake_open(&j->wake) != 0) {
        job_connect(j);
        return 0;
    }
    j->refs = 2;
    if (start_helper_thread(connect_thread, j, 0) != 0) {
        j->refs = 1;
        job_connect(j);
        return 0;
    }
    for (;;) {
        int w = pgs_wait(-1, j->wake.fd, 0);
        pthread_mutex_lock(&j->mu);
        int done = j->done;
        if (!done && (w == PGS_WAIT_INTERRUPTED || w < 0))
            j->abandoned = 1; /* a failed poll leaves no way to wait either */
        int abandoned = j->abandoned;
        pthread_mutex_unlock(&j->mu);
        if (done)
            return 0;
        if (abandoned)
            return -1;
    }
}

/* A new handle for conninfo, with conninfo checked: PGSPOUT_OK, or the code
 * of a failure (*out a failed handle, or NULL for EINVAL/ENOMEM). */
static int conn_new(const char *conninfo, const pgspout_options *opts, pgspout_conn **out)
{
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (conninfo == NULL)
        return PGSPOUT_EINVAL;
    pgspout_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return PGSPOUT_ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    c->cancel_timeout_ms = opts ? opts->cancel_timeout_ms : PGS_CANCEL_TIMEOUT_MS;
    pthread_once(&fork_once, watch_forks);
    c->pid = getpid();
    c->fork_gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
    *out = c;

    /* A conninfo libpq cannot parse is a value error, with libpq's reason
     * (which quotes no password: it names the bad syntax only). */
    char *perr = NULL;
    PQconninfoOption *parsed = PQconninfoParse(conninfo, &perr);
    if (parsed == NULL) {
        char safe[512] = "out of memory";
        if (perr)
            redact_quoted(perr, safe, sizeof safe);
        pgs_conn_set_error(c, "invalid connection string: %s", safe);
        int code = perr ? PGSPOUT_ECONNECT : PGSPOUT_ENOMEM;
        PQfreemem(perr);
        c->broken = 1;
        pgs_metrics_connect(0, 0);
        return code;
    }
    PQconninfoFree(parsed);
    return PGSPOUT_OK;
}

int pgspout_connect_opts(const char *conninfo, const pgspout_options *opts, pgspout_conn **out)
{
    int rc = conn_new(conninfo, opts, out);
    if (rc != PGSPOUT_OK)
        return rc;
    pgspout_conn *c = *out;

    connect_job *j = calloc(1, sizeof *j);
    if (j == NULL || (j->conninfo = strdup(conninfo)) == NULL) {
        free(j);
        c->broken = 1;
        pgs_conn_set_error(c, "out of memory");
        return PGSPOUT_ENOMEM;
    }
    pthread_mutex_init(&j->mu, NULL);
    j->wake.fd = -1;
    j->refs = 1;
    job_params(j, opts);

    int64_t t0 = pgs_now_ns();
    int interrupted = 0;
    if (pgs_interrupt_armed())
        interrupted = connect_interruptible(j) != 0;
    else
        job_connect(j);
    double secs = (double)(pgs_now_ns() - t0) / 1e9;
    c->pg = interrupted ? NULL : j->pg;
    job_release(j);
    if (interrupted) {
        pgs_metrics_connect(0, secs);
        pgs_conn_set_error(c, "connect interrupted");
        c->broken = 1;
        return PGSPOUT_EINTR;
    }
    if (c->pg == NULL) {
        pgs_metrics_connect(0, secs);
        pgs_conn_set_error(c, "out of memory");
        c->broken = 1;
        return PGSPOUT_ENOMEM;
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        pgs_metrics_connect(0, secs);
        pgs_conn_set_error(c, "connection failed: %s", PQerrorMessage(c->pg));
        c->broken = 1;
        return PGSPOUT_ECONNECT;
    }
    PQsetNoticeReceiver(c->pg, notice_to_log, c);
    /* every wait is ours (poll with deadlines and a wake-up fd): libpq must
     * never block inside a send */
    PQsetnonblocking(c->pg, 1);
    pgs_metrics_connect(1, secs);
    return PGSPOUT_OK;
}

/* ---------------------------------------------------- non-blocking connect */

/* connecting: 1 while PQconnectPoll runs, 2 while the session setting runs,
 * -1 once it failed, 0 once connected (or connected by pgspout_connect). */
enum { CONNECT_FAILED = -1, CONNECT_POLL = 1, CONNECT_SETTING = 2 };

static int connect_failed(pgspout_conn *c, const char *why)
{
    pgs_metrics_connect(0, (double)(pgs_now_ns() - c->connect_t0) / 1e9);
    pgs_conn_set_error(c, "connection failed: %s", why);
    c->broken = 1;
    c->connecting = CONNECT_FAILED;
    return PGSPOUT_ECONNECT;
}

/* connect_timeout as libpq reads it from the conninfo and the environment
 * (whole seconds; 1 counts as 2, as libpq does), in ms; 0 = none. */
static int64_t conninfo_timeout_ms(PGconn *pg)
{
    int64_t secs = 0;
    PQconninfoOption *o = PQconninfo(pg);
    for (PQconninfoOption *p = o; p && p->keyword; p++)
        if (strcmp(p->keyword, "connect_timeout") == 0 && p->val && *p->val)
            secs = strtoll(p->val, NULL, 10);
    PQconninfoFree(o);
    if (secs > 0 && secs < 2)
        secs = 2;
    return secs > 0 ? secs * 1000 : 0;
}

int pgspout_connect_start(const char *conninfo, const pgspout_options *opts, pgspout_conn **out)
{
    int rc = conn_new(conninfo, opts, out);
    if (rc != PGSPOUT_OK)
        return rc;
    pgspout_conn *c = *out;
    connect_job j;
    memset(&j, 0, sizeof j);
    j.conninfo = (char *)conninfo; /* libpq copies what it keeps */
    job_params(&j, opts);
    c->connect_t0 = pgs_now_ns();
    c->pg = PQconnectStartParams(j.keys, j.vals, 1);
    if (c->pg == NULL) {
        pgs_metrics_connect(0, 0);
        pgs_conn_set_error(c, "out of memory");
        c->broken = 1;
        c->connecting = CONNECT_FAILED;
        return PGSPOUT_ENOMEM;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD)
        return connect_failed(c, PQerrorMessage(c->pg));
    PQsetNoticeReceiver(c->pg, notice_to_log, c);
    int64_t ms = opts && opts->connect_timeout_ms >= 0 ? opts->connect_timeout_ms
                                                       : conninfo_timeout_ms(c->pg);
    c->connect_deadline = ms > 0 ? c->connect_t0 + ms * PGS_NS_PER_MS : 0;
    c->connecting = CONNECT_POLL;
    c->connect_write = 1; /* libpq: wait for writable before the first poll */
    return PGSPOUT_OK;
}

/* 1 if sock is ready now for reading (or writing), or in error. */
static int sock_ready(int sock, int want_write)
{
    struct pollfd p = {sock, (short)(want_write ? POLLOUT : POLLIN), 0};
    return sock < 0 || poll(&p, 1, 0) != 0;
}

int pgspout_conn_poll(pgspout_conn *c, int *fd, int *want_write, int *wait_ms)
{
    if (fd)
        *fd = -1;
    if (want_write)
        *want_write = 0;
    if (wait_ms)
        *wait_ms = -1;
    if (c == NULL)
        return PGSPOUT_EINVAL;
    if (c->connecting == 0) /* connected (or failed) by pgspout_connect */
        return c->pg && PQstatus(c->pg) == CONNECTION_OK ? PGSPOUT_OK : PGSPOUT_ECONNECT;
    if (c->connecting == CONNECT_FAILED)
        return PGSPOUT_ECONNECT;
    int64_t now = pgs_now_ns();
    if (c->connect_deadline && now >= c->connect_deadline)
        return connect_failed(c, "timeout expired (connect_timeout)");
    PGconn *pg = c->pg;
    for (;;) {
        if (c->connecting == CONNECT_POLL) {
            if (!sock_ready(PQsocket(pg), c->connect_write))
                break;
            PostgresPollingStatusType st = PQconnectPoll(pg);
            if (st == PGRES_POLLING_FAILED)
                return connect_failed(c, PQerrorMessage(pg));
            if (st != PGRES_POLLING_OK) {
                c->connect_write = st == PGRES_POLLING_WRITING;
                continue;
            }
            /* as pgspout_connect: exact floats, then every wait is ours */
            PQsetnonblocking(pg, 1);
            if (!PQsendQuery(pg, "SET extra_float_digits = 3"))
                return connect_failed(c, PQerrorMessage(pg));
            c->connecting = CONNECT_SETTING;
        }
        int f = PQflush(pg);
        if (f < 0 || !PQconsumeInput(pg))
            return connect_failed(c, PQerrorMessage(pg));
        c->connect_write = f > 0;
        while (f == 0 && !PQisBusy(pg)) {
            PGresult *r = PQgetResult(pg);
            if (r == NULL) {
                if (PQstatus(pg) != CONNECTION_OK)
                    return connect_failed(c, PQerrorMessage(pg));
                c->connecting = 0;
                pgs_metrics_connect(1, (double)(pgs_now_ns() - c->connect_t0) / 1e9);
                return PGSPOUT_OK;
            }
            PQclear(r); /* a refused SET shows as the connection's status, as in connect */
        }
        break;
    }
    if (fd)
        *fd = PQsocket(pg);
    if (want_write)
        *want_write = c->connect_write;
    if (wait_ms && c->connect_deadline) {
        int64_t left = (c->connect_deadline - now + PGS_NS_PER_MS - 1) / PGS_NS_PER_MS;
        *wait_ms = left > INT32_MAX ? INT32_MAX : (int)left;
    }
    return PGSPOUT_AGAIN;
}

/* Notifications (LISTEN/NOTIFY) pile up in libpq until read: drop them,
 * counted, with a log line for the first on each connection. */
void pgs_conn_drop_notifies(pgspout_conn *c)
{
    PGnotify *n;
    uint64_t dropped = 0;
    while ((n = PQnotifies(c->pg)) != NULL) {
        if (!c->notified++)
            pgs_log(2,
                    "server notification on channel \"%.64s\" dropped: pgspout does not "
                    "deliver LISTEN/NOTIFY (counted in pgspout_notifications_dropped_total)",
                    n->relname);
        PQfreemem(n);
        dropped++;
    }
    if (dropped)
        pgs_metrics_notifications_dropped(dropped);
}

void pgspout_conn_close(pgspout_conn *c)
{
    if (c == NULL)
        return;
    if (c->pool && c->pool_out) {
        /* out from a pool (its owner's: nobody else writes pool_out while
         * it is out): back to the pool, which ends a stream left open */
        pgspout_pool_release(c->pool, c);
        return;
    }
    if (c->active)
        pgs_stream_detach(c->active); /* ends it and unlinks it from c */
    if (c->pg && !pgs_conn_owned(c)) {
        /* A fork child shares the parent's socket: point the descriptor at
         * /dev/null so PQfinish's goodbye cannot reach the parent's server. */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0 && PQsocket(c->pg) >= 0) {
            dup2(devnull, PQsocket(c->pg));
            close(devnull);
        }
    }
    pthread_mutex_lock(&c->lock);
    PGconn *pg = c->pg;
    c->pg = NULL;
    pthread_mutex_unlock(&c->lock);
    if (pg)
        PQfinish(pg);
    pthread_mutex_destroy(&c->lock);
    pgs_typecache_free(c->types);
    pgs_described_free(c);
    free(c->err);
    free(c);
}

void pgspout_conn_release(pgspout_conn *c)
{
    if (c == NULL)
        return;
    if (c->active)
        c->released = 1; /* stream_end closes it */
    else
        pgspout_conn_close(c);
}

const char *pgspout_conn_error(const pgspout_conn *c)
{
    if (c == NULL)
        return "connection handle is NULL";
    if (c->err == NULL && c->pg == NULL)
        return "out of memory"; /* a failed connect whose message could not be allocated */
    if (c->err == NULL && PQstatus(c->pg) == CONNECTION_BAD)
        return PQerrorMessage(c->pg); /* the same, when libpq has its own reason */
    return c->err ? c->err : "";
}

int pgspout_conn_ok(const pgspout_conn *c)
{
    return c && c->pg && !c->broken && !c->connecting && pgs_conn_owned(c) &&
           PQstatus(c->pg) == CONNECTION_OK;
}

int pgspout_conn_server_version(const pgspout_conn *c)
{
    return c && c->pg ? PQserverVersion(c->pg) : 0;
}

unsigned pgs_fork_generation(void)
{
    pthread_once(&fork_once, watch_forks);
    if (fork_watch_failed)
        return (unsigned)getpid();
    return atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

int pgs_conn_owned(const pgspout_conn *c)
{
    if (fork_watch_failed)
        return c->pid == getpid();
    return c->fork_gen == atomic_load_explicit(&fork_gen, memory_order_relaxed);
}

/* libpq 15's PQcancel blocks without a timeout (a new connection to the
 * server, then a wait for it to close): on a silent network, forever. It
 * runs in a short-lived thread of its own; the caller waits a bounded time.
 * The job is freed by whichever of the two lets go last. */
typedef struct cancel_job {
    PGcancel *cancel;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, ok, refs;
} cancel_job;

static void cancel_job_release(cancel_job *j)
{
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left)
        return;
    PQfreeCancel(j->cancel);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void *cancel_thread(void *arg)
{
    cancel_job *j = arg;
    char errbuf[256];
    int ok = PQcancel(j->cancel, errbuf, sizeof errbuf);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    j->ok = ok;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    cancel_job_release(j);
    return NULL;
}

int pgs_conn_send_cancel(pgspout_conn *c, int64_t timeout_ms)
{
    if (!pgs_conn_owned(c))
        return -1; /* it would cancel the parent's query */
    cancel_job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return -2;
    pthread_mutex_lock(&c->lock);
    int nosock = c->pg == NULL || PQsocket(c->pg) < 0;
    j->cancel = c->pg ? PQgetCancel(c->pg) : NULL;
    pthread_mutex_unlock(&c->lock);
    if (j->cancel == NULL) {
        free(j);
        return nosock ? -1 : -2; /* with a socket, PQgetCancel fails only for memory */
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->refs = 2;
    if (start_helper_thread(cancel_thread, j, 128 * 1024) != 0) {
        j->refs = 1;
        cancel_thread(j); /* no thread to be had: do it here, unbounded */
        return 0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
        ;
    int ok = j->done && j->ok;
    pthread_mutex_unlock(&j->mu);
    cancel_job_release(j);
    return ok ? 0 : -1;
}

int pgspout_conn_cancel(pgspout_conn *c)
{
    if (c == NULL)
        return PGSPOUT_EINVAL;
    atomic_fetch_add(&c->cancel_gen, 1); /* the stream reports ECANCELLED, not ESQL */
    int r = pgs_conn_send_cancel(c, c->cancel_timeout_ms);
    if (r == -1)
        atomic_store(&c->cancel_failed, 1);
    return r == 0 ? PGSPOUT_OK : r == -2 ? PGSPOUT_ENOMEM : PGSPOUT_ECONN;
}
