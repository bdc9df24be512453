/*
 * registry.c - a process-wide table of streams addressed by id.
 *
 * Hosts such as OpenResty drive one stream from different threads and Lua
 * VMs over time (every ngx.run_worker_thread call may land on another pool
 * thread, in another VM), so a stream cannot live inside one VM. The
 * registry owns the connection and the stream and hands out a number.
 *
 * Connections come from a pool (pgspout_pool): the caller's
 * (pgspout_registry_open_pool) or, for pgspout_registry_open, one the
 * registry keeps per conninfo and connection/pool keys for the life of the
 * process (option pool=off: a connection of the stream's own, closed at its
 * end, as before pools existed). A stream's connection goes back (reset by
 * pgspout_pool_release) as soon as the stream has ended - the fetch that
 * met its end, a cancel, a close or the reaper - while the entry and its
 * ended stream handle stay until closed or reaped, so that fetch keeps
 * reporting the end and stats keep answering.
 *
 * It is built on the public API only (pgspout_connect_opts,
 * pgspout_stream_open, pgspout_stream_next_chunk, pgspout_chunk_ndjson,
 * pgspout_row_json, pause/resume/cancel, pgspout_stream_stats_json, close);
 * the internal details it uses: idle_timeout_ms of the parsed options, and
 * option json, which it sets on a copy of them (its rows go out as JSON), as
 * it sets pool_one_stream (its pooled connection goes back at the stream's
 * end, so the pool's reset can follow the statement).
 *
 * Entries
 * -------
 * Every entry has an id (monotonic, never reused, starts at 1), a
 * connection (until it is given back) and a stream, a copy of the SQL, the idle timeout, the time
 * it was last used, and a partly consumed chunk (fetch may hand out fewer rows than the core
 * buffered; the rest is served by the next fetch, from the same chunk, which stays valid until the
 * next next_chunk/close on the stream - exactly the core's lifetime rule).
 *
 * Locks
 * -----
 *  - reg.mu (one, process-wide) protects the hash table, every entry's
 *    `next`, `refs`, `fetchers`, `linked` and `last_used_ms`, the id
 *    counter and the reaper flag. It is held only for short, non-blocking
 *    work: no libpq or core call is ever made under it.
 *  - e->mu (one per entry) serialises the "owner" calls on the stream:
 *    pgspout_stream_next_chunk, pgspout_chunk_ndjson, pgspout_row_json,
 *    the chunk cursor and the hand-back of e->conn. A second concurrent fetch on the same id waits
 * on it. pause/resume/cancel/stats do NOT take it: the core makes those callable from any thread,
 * so they can wake or stop a fetch that is blocked holding e->mu.
 *  - Order: e->mu may be held while taking reg.mu, never the reverse, so
 *    there is no lock cycle. pools_mu (the registry's own pools) is a leaf:
 *    nothing else is taken under it (no pool call: pool.c's fork handlers
 *    take the pools' locks before the registry's take reg.mu and
 *    pools_mu).
 *
 * Lifetime
 * --------
 * Entries are reference counted (under reg.mu). The table holds one
 * reference while the entry is linked; every call that found the entry by
 * id holds one until it returns. Closing or reaping unlinks the entry (so
 * no new caller can find it), cancels the stream (which wakes a fetch
 * blocked on another thread) and drops the table's reference. Whoever drops
 * the last reference tears the entry down - the connection back to its
 * pool (or closed), pgspout_stream_close, free - outside every lock. So the stream is never
 * closed while another thread is inside pause/resume/cancel/stats/fetch on
 * it, and pgspout_registry_close returns without waiting for a fetch that
 * is still unwinding on another thread (that fetch finishes the teardown).
 * The teardown may block (a cancel, a drain, the pool's reset), so the
 * calls that never block (pause, resume, stats, list: an event loop makes
 * them) hand a last reference to the reaper thread instead (the
 * graveyard list, under reg.mu; the thread is woken at once).
 *
 * Idle reaping
 * ------------
 * last_used_ms is set at open and by every fetch (at its start and at its
 * end), pause, resume and cancel; stats and list do not count as use, so a
 * monitoring page cannot keep an abandoned stream alive. An entry is idle
 * when no fetch is running or waiting on it (fetchers == 0) and
 * now - last_used_ms >= idle_timeout_ms (the stream's idle_timeout option,
 * 60s by default; 0 disables reaping for that stream). A fetch blocked for
 * a long time (paused stream, slow query) is therefore never reaped from
 * under itself. A background thread, started by the first successful
 * pgspout_registry_open, reaps once a second; pgspout_registry_reap() does
 * the same synchronously. The thread runs for the life of the process
 * (hosts that dlclose a module containing pgspout must load it with
 * RTLD_NODELETE / link it with -z nodelete; the Lua module does).
 *
 * Fork: a child process must not close connections it shares with its
 * parent, so after fork() the child's registry starts empty (the parent's
 * entries are forgotten in the child, not closed) and the reaper thread,
 * which does not survive fork, is started again on demand. The registry's
 * pools stay: they are fork-safe themselves (a child's first call forgets
 * the parent's connections).
 */
#include "pgspout.h"

#include "buf.h"
#include "json.h"
#include "options.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

#define REG_BUCKETS         256u
#define REG_DEFAULT_IDLE_MS 60000

typedef struct reg_entry {
    uint64_t id;

    /* --- reg.mu --- */
    struct reg_entry *next; /* hash chain while linked; reap list after */
    unsigned refs;          /* table's (while linked) + one per caller */
    unsigned fetchers;      /* fetch calls inside or waiting on e->mu */
    int linked;             /* reachable by id */
    int64_t last_used_ms;

    /* --- immutable after registration --- */
    int64_t idle_timeout_ms; /* 0 = never reaped */
    char *sql;
    pgspout_stream *stream;
    pgspout_pool *pool; /* where conn goes back; NULL = closed instead */

    /* --- e->mu (or the last reference) --- */
    pthread_mutex_t mu;
    pgspout_conn *conn;         /* NULL once given back */
    const pgspout_chunk *chunk; /* last chunk from the core, maybe partly served */
    int chunk_pos;              /* rows of chunk already handed out */
} reg_entry;

static struct {
    pthread_mutex_t mu;
    reg_entry *buckets[REG_BUCKETS];
    uint64_t next_id;
    size_t count;
    int reaper_started;
    reg_entry *graveyard; /* unlinked, last reference dropped: to tear down */
    pthread_cond_t wake;  /* the reaper waits on it ... */
    clockid_t wake_clock; /* ... until a time of this clock */
} reg = {PTHREAD_MUTEX_INITIALIZER, {NULL},        0, 0, 0, NULL,
         PTHREAD_COND_INITIALIZER,  CLOCK_REALTIME};

static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

/* The registry's own pools, one per conninfo and connection/pool keys,
 * made on first use and kept for the life of the process (a list that only
 * grows at its head: a reader may walk it from a head read under the lock
 * without holding it). */
typedef struct reg_pool {
    struct reg_pool *next;
    char *key;
    pgspout_pool *pool;
} reg_pool;

static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static reg_pool *pools;

/* The keys of an options set that make two registry pools differ: how
 * connections are opened, and the pool's own limits. */
static const char *const pool_keys[] = {
    "connect_timeout",  "keepalives_idle",  "keepalives_interval", "keepalives_count",
    "tcp_user_timeout", "application_name", "cancel_timeout",      "max_size",
    "min_idle",         "max_lifetime",     "acquire_timeout"};
#define NPOOL_KEYS (sizeof pool_keys / sizeof pool_keys[0])

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t bucket_of(uint64_t id) { return (size_t)(id % REG_BUCKETS); }

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Set *errmsg (when wanted) to a malloc'd copy of the formatted message. */
static void set_errmsg(char **errmsg, const char *prefix, const char *msg, const char *sqlstate,
                       int code)
{
    pgs_buf b = PGS_BUF_INIT;
    if (!errmsg)
        return;
    if (!msg || !*msg)
        msg = pgspout_strerror(code);
    if (prefix)
        pgs_buf_puts(&b, prefix);
    pgs_buf_puts(&b, msg);
    /* trim the trailing newline libpq leaves on its messages */
    while (b.len > 0 && !b.oom && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' '))
        b.data[--b.len] = '\0';
    if (sqlstate && *sqlstate && !strstr(msg, sqlstate))
        pgs_buf_printf(&b, " (SQLSTATE %s)", sqlstate);
    *errmsg = pgs_buf_steal(&b); /* NULL on ENOMEM: acceptable */
}

/* Runs in the child after fork(): forget (do not close) the parent's
 * entries; the reaper thread did not survive. */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&reg.mu);
    pthread_mutex_lock(&pools_mu);
}

static void atfork_parent(void)
{
    pthread_mutex_unlock(&pools_mu);
    pthread_mutex_unlock(&reg.mu);
}

/* (Re)make reg.wake on the monotonic clock: at init, and in a fork child,
 * where the copy may record the parent's reaper as a waiter (so it is not
 * destroyed - glibc would wait for that thread - but made anew). */
static void wake_init(void)
{
    pthread_condattr_t a;
    memset(&reg.wake, 0, sizeof reg.wake);
    reg.wake_clock = CLOCK_REALTIME;
    if (pthread_condattr_init(&a) != 0) {
        pthread_cond_init(&reg.wake, NULL);
        return;
    }
    if (pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0)
        reg.wake_clock = CLOCK_MONOTONIC;
    pthread_cond_init(&reg.wake, &a);
    pthread_condattr_destroy(&a);
}

static void atfork_child(void)
{
    memset(reg.buckets, 0, sizeof reg.buckets);
    reg.count = 0;
    reg.reaper_started = 0;
    reg.graveyard = NULL; /* the parent's: forgotten too */
    wake_init();          /* nobody waits on it in the child */
    pthread_mutex_unlock(&pools_mu);
    pthread_mutex_unlock(&reg.mu);
}

static void reg_init_once(void)
{
    wake_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* --------------------------------------------------------------- pools */

/* The registry's pool for conninfo and opts (NULL = defaults), made on
 * first use. Returns OK or ENOMEM (then *errmsg is set). Never connects. */
static int registry_pool(const char *conninfo, const pgspout_options *opts, pgspout_pool **out,
                         char **errmsg)
{
    pgspout_options *d = NULL, *po = NULL;
    pgs_buf key = PGS_BUF_INIT;
    reg_pool *rp;
    size_t i;
    int rc = PGSPOUT_ENOMEM;

    *out = NULL;
    if (!opts)
        opts = d = pgspout_options_new();
    po = pgspout_options_new();
    if (!opts || !po)
        goto done;
    pgs_buf_puts(&key, conninfo);
    for (i = 0; i < NPOOL_KEYS; i++) {
        const char *v = pgspout_options_get(opts, pool_keys[i]);
        pgs_buf_printf(&key, "\n%s=%s", pool_keys[i], v ? v : "");
        /* set over a default set, so it takes: same parser, same ranges */
        if (v && pgspout_options_set(po, pool_keys[i], v) != PGSPOUT_OK) {
            rc = PGSPOUT_EVALUE;
            set_errmsg(errmsg, "pgspout_registry_open: ", pgspout_options_error(po), NULL, rc);
            goto done;
        }
    }
    if (key.oom || pgspout_options_set(po, "label", "registry") != PGSPOUT_OK)
        goto done;

    /* look up; make a new pool outside the lock (pool.c takes its own
     * locks, which its fork handlers take before ours), then insert it
     * unless another thread inserted one for the key meanwhile */
    for (;;) {
        reg_pool *made = NULL;
        pthread_mutex_lock(&pools_mu);
        for (rp = pools; rp; rp = rp->next)
            if (strcmp(rp->key, key.data) == 0)
                break;
        pthread_mutex_unlock(&pools_mu);
        if (rp) {
            *out = rp->pool;
            rc = PGSPOUT_OK;
            break;
        }
        made = calloc(1, sizeof *made);
        if (!made || !(made->key = dup_str(key.data))) {
            free(made);
            rc = PGSPOUT_ENOMEM;
            break;
        }
        rc = pgspout_pool_new(conninfo, po, &made->pool);
        if (rc != PGSPOUT_OK) {
            free(made->key);
            free(made);
            set_errmsg(errmsg, "pgspout_registry_open: pool: ", NULL, NULL, rc);
            break;
        }
        pthread_mutex_lock(&pools_mu);
        for (rp = pools; rp; rp = rp->next)
            if (strcmp(rp->key, key.data) == 0)
                break;
        if (!rp) {
            made->next = pools;
            pools = made;
        }
        pthread_mutex_unlock(&pools_mu);
        if (!rp) {
            *out = made->pool;
            break;
        }
        pgspout_pool_close(made->pool); /* lost the race: use the other */
        free(made->key);
        free(made);
    }

done:
    if (rc == PGSPOUT_ENOMEM && errmsg && !*errmsg)
        set_errmsg(errmsg, NULL, NULL, NULL, rc);
    pgs_buf_free(&key);
    pgspout_options_free(po);
    pgspout_options_free(d);
    return rc;
}

/* The reaper's tick for the registry's pools. */
static void maintain_pools(void)
{
    reg_pool *rp;
    pthread_mutex_lock(&pools_mu);
    rp = pools;
    pthread_mutex_unlock(&pools_mu);
    for (; rp; rp = rp->next)
        pgspout_pool_maintain(rp->pool); /* failures went to the log hooks */
}

/* Give e's connection back (e->mu held, or the last reference): to its
 * pool, which resets it (ending a stream still running on it) or closes
 * it; without a pool, closed. */
static void give_back(reg_entry *e)
{
    pgspout_conn *c = e->conn;
    if (!c)
        return;
    e->conn = NULL;
    e->chunk = NULL; /* belongs to the stream, which is over */
    e->chunk_pos = 0;
    if (e->pool)
        pgspout_pool_release(e->pool, c);
    else
        pgspout_conn_close(c);
}

/* The stream is over or on its way out: ended, or cancelled and ended at
 * its owner's next call. */
static int stream_over(const reg_entry *e)
{
    int st = pgspout_stream_state(e->stream);
    return st != PGSPOUT_STATE_RUNNING && st != PGSPOUT_STATE_PAUSED;
}

/* The stream was cancelled, or has ended: bring it to its end (with
 * cancel requested, the core ends it as cancelled at its next call, rows
 * still buffered dropped) and give the connection back (e->mu held). */
static void finish_locked(reg_entry *e)
{
    const pgspout_chunk *c;
    if (!e->conn)
        return;
    /* ended: repeats the end; cancelled: ends it now - at once when the
     * server has answered the cancel, else after the bounded drain that a
     * blocking call runs (the non-blocking one leaves it to later calls,
     * and the connection must not go back to the pool mid-statement) */
    int rc = pgspout_stream_next_chunk(e->stream, PGSPOUT_NONBLOCK, &c);
    if ((rc == PGSPOUT_AGAIN || rc == PGSPOUT_PAUSED) &&
        pgspout_stream_state(e->stream) == PGSPOUT_STATE_CANCELLED)
        (void)pgspout_stream_next_chunk(e->stream, 0, &c);
    give_back(e);
}

/* ---------------------------------------------------------- entry lifetime */

/* Tear an entry down. Only called by whoever dropped the last reference:
 * nobody else can reach it, so no lock is needed. The connection goes back
 * first: its pool ends a stream still running on it (a cancel and a drain,
 * or, while other drains are busy, the connection closed instead: pool.c)
 * or, without a pool, closing it does; then the ended stream is freed. May
 * block (the cancel, the drain, the pool's reset are round trips). */
static void entry_destroy(reg_entry *e)
{
    give_back(e);
    pgspout_stream_close(e->stream);
    pthread_mutex_destroy(&e->mu);
    free(e->sql);
    free(e);
}

/* Find a linked entry and take a reference. fetch != 0 also counts the
 * caller as a fetcher (which keeps the reaper away); touch != 0 marks the
 * entry as used now. NULL if there is no such id. */
static reg_entry *entry_get(uint64_t id, int fetch, int touch)
{
    reg_entry *e;
    pthread_mutex_lock(&reg.mu);
    for (e = reg.buckets[bucket_of(id)]; e; e = e->next)
        if (e->id == id)
            break;
    if (e) {
        e->refs++;
        if (fetch)
            e->fetchers++;
        if (touch)
            e->last_used_ms = now_ms();
    }
    pthread_mutex_unlock(&reg.mu);
    return e;
}

/* Drop a reference taken by entry_get (same fetch/touch as there), and the
 * table's own reference too when unlinking did not already drop it
 * (extra != 0). Tears the entry down if that was the last one. */
static void entry_put(reg_entry *e, int fetch, int touch, unsigned extra)
{
    unsigned left;
    pthread_mutex_lock(&reg.mu);
    if (fetch)
        e->fetchers--;
    if (touch && e->linked)
        e->last_used_ms = now_ms();
    e->refs -= 1 + extra;
    left = e->refs;
    pthread_mutex_unlock(&reg.mu);
    if (left == 0)
        entry_destroy(e);
}

static void reaper_start_locked(void);

/* entry_put for the calls that must not block: a last reference goes to
 * the graveyard, for the reaper thread (or the next pgspout_registry_reap
 * if that thread could not start) to tear the entry down. */
static void entry_put_nb(reg_entry *e, int touch)
{
    pthread_mutex_lock(&reg.mu);
    if (touch && e->linked)
        e->last_used_ms = now_ms();
    if (--e->refs == 0) { /* unlinked: its next is free */
        e->next = reg.graveyard;
        reg.graveyard = e;
        reaper_start_locked();
        pthread_cond_signal(&reg.wake);
    }
    pthread_mutex_unlock(&reg.mu);
}

/* Tear down the graveyard's entries (taken under reg.mu by the caller). */
static void bury(reg_entry *e)
{
    for (reg_entry *nx; e; e = nx) {
        nx = e->next;
        entry_destroy(e);
    }
}

/* Remove e from the table (caller holds reg.mu). The table's reference is
 * not dropped here: the caller passes it on to entry_put(..., extra=1) or
 * drops it as the reaper does. Returns 0 if it was already unlinked. */
static int entry_unlink_locked(reg_entry *e)
{
    reg_entry **pp;
    if (!e->linked)
        return 0;
    for (pp = &reg.buckets[bucket_of(e->id)]; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            break;
        }
    }
    e->next = NULL;
    e->linked = 0;
    reg.count--;
    return 1;
}

static int entry_linked(reg_entry *e)
{
    int linked;
    pthread_mutex_lock(&reg.mu);
    linked = e->linked;
    pthread_mutex_unlock(&reg.mu);
    return linked;
}

/* ------------------------------------------------------------------ reaper */

/* Once a second: reap, maintain the pools; at once: the graveyard. */
static void *reaper_main(void *arg)
{
    (void)arg;
    int64_t tick = now_ms() + 1000;
    pthread_mutex_lock(&reg.mu);
    for (;;) {
        while (reg.graveyard == NULL && now_ms() < tick) {
            struct timespec at; /* tick, on the condition variable's clock */
            int64_t left = tick - now_ms();
            clock_gettime(reg.wake_clock, &at);
            at.tv_sec += (time_t)(left / 1000);
            at.tv_nsec += (long)(left % 1000) * 1000000L;
            if (at.tv_nsec >= 1000000000L) {
                at.tv_sec++;
                at.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&reg.wake, &reg.mu, &at);
        }
        reg_entry *dead = reg.graveyard;
        reg.graveyard = NULL;
        pthread_mutex_unlock(&reg.mu);
        bury(dead);
        if (now_ms() >= tick) {
            pgspout_registry_reap();
            maintain_pools();
            tick = now_ms() + 1000;
        }
        pthread_mutex_lock(&reg.mu);
    }
    return NULL;
}

/* Start the background reaper once (caller holds reg.mu). The thread blocks
 * every signal so it never takes one meant for the host. If it cannot be
 * created, the next open tries again; pgspout_registry_reap still works. */
static void reaper_start_locked(void)
{
    pthread_t t;
    pthread_attr_t attr;
    sigset_t all, old;
    if (reg.reaper_started)
        return;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&t, &attr, reaper_main, NULL) == 0)
        reg.reaper_started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

/* ------------------------------------------------------------- public API */

/* Open sql on a connection from pool (NULL: a connection of its own to
 * conninfo) and register the stream. */
static int open_entry(pgspout_pool *pool, const char *conninfo, const char *sql, int nparams,
                      const char *const *params, const pgspout_options *opts, uint64_t *id,
                      char **errmsg)
{
    pgspout_conn *conn = NULL;
    pgspout_stream *stream = NULL;
    reg_entry *e;
    int64_t idle_ms = REG_DEFAULT_IDLE_MS;
    size_t b;
    int rc;

    if (opts) {
        idle_ms = opts->idle_timeout_ms;
    } else {
        pgspout_options *d = pgspout_options_new();
        if (d) {
            idle_ms = d->idle_timeout_ms;
            pgspout_options_free(d);
        }
    }
    if (idle_ms < 0)
        idle_ms = 0;

    e = calloc(1, sizeof *e);
    if (e)
        e->sql = dup_str(sql);
    if (!e || !e->sql || pthread_mutex_init(&e->mu, NULL) != 0) {
        if (e)
            free(e->sql);
        free(e);
        set_errmsg(errmsg, NULL, NULL, NULL, PGSPOUT_ENOMEM);
        return PGSPOUT_ENOMEM;
    }
    e->pool = pool;

    if (pool) {
        rc = pgspout_pool_acquire(pool, -1, &conn);
        if (rc == PGSPOUT_ETIMEOUT)
            set_errmsg(errmsg, NULL,
                       "pool exhausted: no connection came free within its acquire_timeout", NULL,
                       rc);
        else if (rc == PGSPOUT_ESTATE)
            set_errmsg(errmsg, NULL, "the pool is closed", NULL, rc);
    } else {
        rc = pgspout_connect_opts(conninfo, opts, &conn);
    }
    e->conn = conn;
    if (rc < 0) {
        if (errmsg && !*errmsg)
            set_errmsg(errmsg, "connect: ", conn ? pgspout_conn_error(conn) : NULL, NULL, rc);
        goto fail;
    }
    /* its rows go out as NDJSON: option json, so that they render as
     * row_to_json does (a copy: opts is the caller's) */
    pgspout_options jopts;
    if (opts)
        jopts = *opts;
    else
        pgs_options_defaults(&jopts);
    jopts.json = 1;
    jopts.pool_one_stream = pool != NULL; /* given back at the stream's end */
    rc = pgspout_stream_open(conn, sql, nparams, params, &jopts, &stream);
    e->stream = stream;
    if (rc < 0) {
        if (stream)
            set_errmsg(errmsg, NULL, pgspout_stream_error(stream), pgspout_stream_sqlstate(stream),
                       rc);
        else
            set_errmsg(errmsg, NULL, pgspout_conn_error(conn), NULL, rc);
        goto fail;
    }
    e->idle_timeout_ms = idle_ms;
    e->refs = 1; /* the table's */
    e->linked = 1;

    pthread_mutex_lock(&reg.mu);
    e->id = ++reg.next_id;
    e->last_used_ms = now_ms();
    b = bucket_of(e->id);
    e->next = reg.buckets[b];
    reg.buckets[b] = e;
    reg.count++;
    reaper_start_locked();
    *id = e->id;
    pthread_mutex_unlock(&reg.mu);
    return PGSPOUT_OK;

fail:
    entry_destroy(e); /* closes the stream, gives the connection back */
    return rc;
}

static int open_args_ok(const char *sql, int nparams, const char *const *params, uint64_t *id,
                        char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (id)
        *id = 0;
    if (!sql || !id || nparams < 0 || (nparams > 0 && !params)) {
        set_errmsg(errmsg, "pgspout_registry_open: ", "NULL or out-of-range argument", NULL,
                   PGSPOUT_EINVAL);
        return 0;
    }
    pthread_once(&reg_once, reg_init_once);
    return 1;
}

int pgspout_registry_open(const char *conninfo, const char *sql, int nparams,
                          const char *const *params, const pgspout_options *opts, uint64_t *id,
                          char **errmsg)
{
    pgspout_pool *pool = NULL;
    int rc;

    if (!open_args_ok(sql, nparams, params, id, errmsg))
        return PGSPOUT_EINVAL;
    if (!conninfo) {
        set_errmsg(errmsg, "pgspout_registry_open: ", "NULL or out-of-range argument", NULL,
                   PGSPOUT_EINVAL);
        return PGSPOUT_EINVAL;
    }
    if (!opts || opts->pool) {
        rc = registry_pool(conninfo, opts, &pool, errmsg);
        if (rc < 0)
            return rc;
    }
    return open_entry(pool, conninfo, sql, nparams, params, opts, id, errmsg);
}

int pgspout_registry_pool(const char *conninfo, const pgspout_options *opts, pgspout_pool **out)
{
    int rc;
    if (out)
        *out = NULL;
    if (!conninfo || !out)
        return PGSPOUT_EINVAL;
    pthread_once(&reg_once, reg_init_once);
    rc = registry_pool(conninfo, opts, out, NULL);
    if (rc == PGSPOUT_OK) {
        pthread_mutex_lock(&reg.mu);
        reaper_start_locked(); /* its tick maintains the pool */
        pthread_mutex_unlock(&reg.mu);
    }
    return rc;
}

int pgspout_registry_open_pool(pgspout_pool *pool, const char *sql, int nparams,
                               const char *const *params, const pgspout_options *opts, uint64_t *id,
                               char **errmsg)
{
    if (!open_args_ok(sql, nparams, params, id, errmsg))
        return PGSPOUT_EINVAL;
    if (!pool) {
        set_errmsg(errmsg, "pgspout_registry_open_pool: ", "NULL pool", NULL, PGSPOUT_EINVAL);
        return PGSPOUT_EINVAL;
    }
    return open_entry(pool, NULL, sql, nparams, params, opts, id, errmsg);
}

/* The NDJSON a fetch hands out: malloc'd, NUL-terminated, freed by the
 * caller with pgspout_free. Appends either succeed whole or leave it as it
 * was. */
typedef struct out_buf {
    char *p;
    size_t len, cap;
} out_buf;

static int out_add(out_buf *b, const char *s, size_t n, int newline)
{
    size_t need = b->len + n + (newline ? 1 : 0) + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *q;
        while (cap < need)
            cap *= 2;
        q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    if (newline)
        b->p[b->len++] = '\n';
    b->p[b->len] = '\0';
    return 0;
}

/* Append rows [pos, pos+n) of e->chunk to b. On failure b is unchanged and
 * the code returned (the rows stay unserved). */
static int add_rows(reg_entry *e, out_buf *b, int n)
{
    const char *js;
    size_t jlen, before = b->len;
    int rc, i;

    if (e->chunk_pos == 0 && n == pgspout_chunk_nrows(e->chunk)) {
        /* the whole chunk: one call into the core */
        rc = pgspout_chunk_ndjson(e->stream, e->chunk, &js, &jlen);
        if (rc < 0)
            return rc;
        return out_add(b, js, jlen, 0) == 0 ? PGSPOUT_OK : PGSPOUT_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        const pgspout_row *row = pgspout_chunk_row(e->chunk, e->chunk_pos + i);
        rc = pgspout_row_json(e->stream, row, &js, &jlen);
        if (rc == PGSPOUT_OK && out_add(b, js, jlen, 1) != 0)
            rc = PGSPOUT_ENOMEM;
        if (rc != PGSPOUT_OK) {
            b->len = before;
            if (b->p)
                b->p[before] = '\0';
            return rc;
        }
    }
    return PGSPOUT_OK;
}

/* Hand out rows as NDJSON (e->mu held).
 *
 * max_rows == 0: the rows of one core chunk (blocking for it, as
 * pgspout_stream_next_chunk does). max_rows > 0: at most max_rows rows -
 * the rest of a partly served chunk, or a new chunk (blocking only for the
 * first one), topped up with further chunks while the core has them ready
 * without waiting (PGSPOUT_NONBLOCK). Fewer, bigger fetches when data flows
 * fast, no added latency when it trickles. Rows of a chunk not handed out
 * stay in e->chunk for the next fetch: every row exactly once, in order.
 *
 * When the stream ends or fails after some rows were gathered, those rows
 * are returned (OK) and the next fetch reports the end or the error (the
 * core repeats it). */
static int fetch_locked(reg_entry *e, int max_rows, char **out, size_t *len, int *nrows,
                        char **errmsg, int *ended)
{
    out_buf b = {NULL, 0, 0};
    int total = 0, rc = PGSPOUT_OK, avail, n;

    if (!e->conn) {
        /* given back: the stream has ended; the core repeats how */
        const pgspout_chunk *c = NULL;
        rc = pgspout_stream_next_chunk(e->stream, PGSPOUT_NONBLOCK, &c);
        if (rc == PGSPOUT_OK || rc > PGSPOUT_DONE)
            rc = PGSPOUT_DONE; /* not reached: an ended stream has no rows */
        if (rc < 0)
            set_errmsg(errmsg, NULL, pgspout_stream_error(e->stream),
                       pgspout_stream_sqlstate(e->stream), rc);
        return rc;
    }

    for (;;) {
        if (!e->chunk || e->chunk_pos >= pgspout_chunk_nrows(e->chunk)) {
            const pgspout_chunk *c = NULL;
            e->chunk = NULL;
            e->chunk_pos = 0;
            if (total > 0 && max_rows == 0)
                break;
            rc = pgspout_stream_next_chunk(e->stream, total > 0 ? PGSPOUT_NONBLOCK : 0, &c);
            if (rc == PGSPOUT_DONE || rc < 0)
                *ended = 1; /* the core has let go of the connection */
            if (total > 0 && (rc != PGSPOUT_OK || !c)) {
                rc = PGSPOUT_OK; /* AGAIN, PAUSED, DONE or an error: later */
                break;
            }
            if (rc == PGSPOUT_DONE)
                return PGSPOUT_DONE;
            if (rc < 0) {
                set_errmsg(errmsg, NULL, pgspout_stream_error(e->stream),
                           pgspout_stream_sqlstate(e->stream), rc);
                return rc;
            }
            if (rc != PGSPOUT_OK || !c || pgspout_chunk_nrows(c) <= 0) {
                set_errmsg(errmsg, NULL, "unexpected answer from next_chunk", NULL,
                           PGSPOUT_EINTERNAL);
                return PGSPOUT_EINTERNAL;
            }
            e->chunk = c;
        }

        avail = pgspout_chunk_nrows(e->chunk) - e->chunk_pos;
        n = (max_rows > 0 && max_rows - total < avail) ? max_rows - total : avail;
        rc = add_rows(e, &b, n);
        if (rc != PGSPOUT_OK) {
            if (total > 0) {
                rc = PGSPOUT_OK; /* deliver what we have; the rest stays */
                break;
            }
            free(b.p);
            /* the stream says why its rows could not render (JSON rows) */
            set_errmsg(errmsg, NULL, rc == PGSPOUT_ENOMEM ? NULL : pgspout_stream_error(e->stream),
                       NULL, rc);
            return rc;
        }
        e->chunk_pos += n;
        total += n;
        if (max_rows == 0 || total >= max_rows)
            break;
    }
    *out = b.p;
    *len = b.len;
    *nrows = total;
    return PGSPOUT_OK;
}

int pgspout_registry_fetch(uint64_t id, int max_rows, char **out, size_t *len, int *nrows,
                           char **errmsg)
{
    reg_entry *e;
    size_t dummy_len;
    int dummy_rows, rc, ended = 0;

    if (errmsg)
        *errmsg = NULL;
    if (!len)
        len = &dummy_len;
    if (!nrows)
        nrows = &dummy_rows;
    *len = 0;
    *nrows = 0;
    if (!out || max_rows < 0) {
        if (out)
            *out = NULL;
        set_errmsg(errmsg, "pgspout_registry_fetch: ", "NULL or out-of-range argument", NULL,
                   PGSPOUT_EINVAL);
        return PGSPOUT_EINVAL;
    }
    *out = NULL;

    e = entry_get(id, 1, 1);
    if (!e) {
        set_errmsg(errmsg, NULL, "no registry stream with that id", NULL, PGSPOUT_ENOTFOUND);
        return PGSPOUT_ENOTFOUND;
    }
    pthread_mutex_lock(&e->mu);
    if (!entry_linked(e)) {
        /* closed or reaped while we waited for the previous fetch */
        rc = PGSPOUT_ENOTFOUND;
        set_errmsg(errmsg, NULL, "no registry stream with that id", NULL, rc);
    } else {
        rc = fetch_locked(e, max_rows, out, len, nrows, errmsg, &ended);
        /* ended, or cancelled from another thread while we served rows:
         * the connection goes back now, not when the entry goes */
        if (ended || stream_over(e))
            finish_locked(e);
    }
    pthread_mutex_unlock(&e->mu);
    entry_put(e, 1, 1, 0);
    return rc;
}

/* pause/resume/cancel: any-thread calls into the core, made without e->mu so
 * they reach a fetch blocked on another thread; the reference keeps the
 * stream alive meanwhile. */
static int control(uint64_t id, int (*fn)(pgspout_stream *))
{
    reg_entry *e = entry_get(id, 0, 1);
    int rc;
    if (!e)
        return PGSPOUT_ENOTFOUND;
    rc = fn(e->stream);
    entry_put_nb(e, 1);
    return rc;
}

int pgspout_registry_pause(uint64_t id) { return control(id, pgspout_stream_pause); }

int pgspout_registry_resume(uint64_t id) { return control(id, pgspout_stream_resume); }

/* Cancel, and when no fetch holds the stream, end it and give its
 * connection back now (a fetch that holds it does so as it returns). */
int pgspout_registry_cancel(uint64_t id)
{
    reg_entry *e = entry_get(id, 0, 1);
    int rc;
    if (!e)
        return PGSPOUT_ENOTFOUND;
    rc = pgspout_stream_cancel(e->stream);
    if (pthread_mutex_trylock(&e->mu) == 0) {
        if (stream_over(e))
            finish_locked(e);
        pthread_mutex_unlock(&e->mu);
    }
    entry_put(e, 0, 1, 0);
    return rc;
}

char *pgspout_registry_stats_json(uint64_t id)
{
    reg_entry *e = entry_get(id, 0, 0);
    char *js;
    if (!e)
        return NULL;
    js = pgspout_stream_stats_json(e->stream);
    entry_put_nb(e, 0);
    return js;
}

char *pgspout_registry_list_json(void)
{
    reg_entry **v = NULL;
    int64_t *idle = NULL;
    size_t n = 0, i, k;
    int64_t now;
    pgs_buf b = PGS_BUF_INIT;
    char *st;

    /* snapshot the table with a reference on each entry, then render
     * outside the lock (stats are any-thread calls into the core) */
    pthread_mutex_lock(&reg.mu);
    if (reg.count > 0) {
        v = malloc(reg.count * sizeof *v);
        idle = malloc(reg.count * sizeof *idle);
        if (!v || !idle) {
            pthread_mutex_unlock(&reg.mu);
            free(v);
            free(idle);
            return NULL;
        }
        now = now_ms();
        for (k = 0; k < REG_BUCKETS; k++) {
            reg_entry *e;
            for (e = reg.buckets[k]; e; e = e->next) {
                e->refs++;
                idle[n] = e->fetchers ? 0 : now - e->last_used_ms;
                v[n++] = e;
            }
        }
    }
    pthread_mutex_unlock(&reg.mu);

    /* ids ascending: a stable order for readers */
    for (i = 1; i < n; i++) {
        reg_entry *e = v[i];
        int64_t d = idle[i];
        for (k = i; k > 0 && v[k - 1]->id > e->id; k--) {
            v[k] = v[k - 1];
            idle[k] = idle[k - 1];
        }
        v[k] = e;
        idle[k] = d;
    }

    pgs_buf_putc(&b, '[');
    for (i = 0; i < n; i++) {
        if (i)
            pgs_buf_putc(&b, ',');
        pgs_buf_printf(&b, "{\"id\":%" PRIu64 ",\"sql\":", v[i]->id);
        pgs_json_string(&b, v[i]->sql, strlen(v[i]->sql));
        pgs_buf_printf(&b, ",\"idle_ms\":%" PRId64 ",\"idle_timeout_ms\":%" PRId64 ",\"stats\":",
                       idle[i], v[i]->idle_timeout_ms);
        st = pgspout_stream_stats_json(v[i]->stream);
        pgs_buf_puts(&b, st ? st : "null");
        pgspout_free(st);
        pgs_buf_putc(&b, '}');
    }
    pgs_buf_putc(&b, ']');

    for (i = 0; i < n; i++)
        entry_put_nb(v[i], 0);
    free(v);
    free(idle);
    return pgs_buf_steal(&b);
}

int pgspout_registry_close(uint64_t id)
{
    reg_entry *e;
    int unlinked, fetching;

    e = entry_get(id, 0, 0);
    if (!e)
        return PGSPOUT_ENOTFOUND;
    pthread_mutex_lock(&reg.mu);
    unlinked = entry_unlink_locked(e);
    fetching = e->fetchers > 0;
    pthread_mutex_unlock(&reg.mu);
    if (!unlinked) {
        /* a concurrent close or the reaper got there first */
        entry_put(e, 0, 0, 0);
        return PGSPOUT_ENOTFOUND;
    }
    /* wake a fetch blocked on another thread; it returns ECANCELLED and,
     * holding the last reference, finishes the teardown. Errors (stream
     * already ended) do not matter here. Without a fetch (none can come:
     * unlinked) the teardown below stops the server itself. */
    if (fetching)
        pgspout_stream_cancel(e->stream);
    entry_put(e, 0, 0, 1);
    return PGSPOUT_OK;
}

int pgspout_registry_reap(void)
{
    reg_entry *list = NULL, *e, *nx, *dead;
    int64_t now;
    size_t k;
    int count = 0;

    pthread_mutex_lock(&reg.mu);
    dead = reg.graveyard; /* without a reaper thread, this is where they go */
    reg.graveyard = NULL;
    now = now_ms();
    for (k = 0; k < REG_BUCKETS; k++) {
        for (e = reg.buckets[k]; e; e = nx) {
            nx = e->next;
            /* skip busy entries: a fetch is running or waiting on them */
            if (e->fetchers > 0 || e->idle_timeout_ms <= 0 ||
                now - e->last_used_ms < e->idle_timeout_ms)
                continue;
            entry_unlink_locked(e);
            /* the table's reference now belongs to the reap list */
            e->next = list;
            list = e;
            count++;
        }
    }
    pthread_mutex_unlock(&reg.mu);
    bury(dead);

    for (e = list; e; e = nx) {
        unsigned left;
        nx = e->next;
        pgspout_stream_cancel(e->stream);
        pthread_mutex_lock(&reg.mu);
        left = --e->refs;
        pthread_mutex_unlock(&reg.mu);
        if (left == 0)
            entry_destroy(e);
    }
    return count;
}
