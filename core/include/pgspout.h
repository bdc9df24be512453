/*
 * pgspout.h - stream PostgreSQL query results without holding the whole result.
 *
 * This header is the whole public API and its documentation; anything not
 * declared here is internal. Conventions that hold for every function:
 *
 *  - Functions that can fail return an int: PGSPOUT_OK (0) or a positive
 *    outcome code on success, a negative PGSPOUT_E* code on failure.
 *    pgspout_strerror() gives static text for any code; the detailed message
 *    lives on the object that failed (pgspout_conn_error, pgspout_stream_error,
 *    pgspout_options_error).
 *  - Constructors write the new handle through their last (`out`) argument.
 *    Like sqlite3_open, pgspout_connect and pgspout_stream_open return a
 *    handle even on most failures so that its error can be read; the caller
 *    closes it either way. `*out` is NULL only for PGSPOUT_EINVAL/ENOMEM.
 *  - _free/_close functions accept NULL.
 *  - Borrowed pointers say how long they live. Strings are NUL-terminated
 *    UTF-8 unless a length is returned alongside.
 *  - Threads: a connection and its streams are used by one thread at a time
 *    (the "owner"). The exceptions, callable from any thread at any time while
 *    the handle is open, are marked "any thread": pgspout_conn_cancel,
 *    pgspout_stream_pause, _resume, _cancel, _state and _stats. Metrics and the
 *    registry functions are thread-safe.
 *  - The library never prints, aborts or exits. Diagnostics go to the log
 *    hooks set with pgspout_set_log_hook() / pgspout_set_log_record_hook().
 */
#ifndef PGSPOUT_H
#define PGSPOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PGSPOUT_BUILDING) && defined(__GNUC__)
#define PGSPOUT_EXTERN __attribute__((visibility("default")))
#else
#define PGSPOUT_EXTERN
#endif

/* ---------------------------------------------------------------- version */

#define PGSPOUT_VERSION_MAJOR  0
#define PGSPOUT_VERSION_MINOR  1
#define PGSPOUT_VERSION_PATCH  0
#define PGSPOUT_VERSION_STRING "0.1.0"
/* major * 10000 + minor * 100 + patch: compare with pgspout_version_number() */
#define PGSPOUT_VERSION_NUMBER 100

/* Run-time version string ("0.1.0"); static storage. Any thread. */
PGSPOUT_EXTERN const char *pgspout_version(void);
/* Run-time PGSPOUT_VERSION_NUMBER. Any thread. */
PGSPOUT_EXTERN int pgspout_version_number(void);
/* Name of the row transport this process uses, static storage: "chunked"
 * when the libpq it runs with has PQsetChunkedRowsMode (libpq >= 17; found
 * at run time, whatever libpq pgspout was built against: a newer system
 * libpq, one bundled by a wheel, one loaded with LD_PRELOAD), in which libpq
 * hands over rows in results of up to chunk_rows rows and holds them until
 * such a result is full or the query ends; else "single-row"
 * (PQsetSingleRowMode, one result per row). Fixed for the process's life.
 * Any thread. */
PGSPOUT_EXTERN const char *pgspout_transport(void);

/* ---------------------------------------------------------- return codes */
/* Stable values: never renumbered; retired codes stay reserved. */
enum {
    PGSPOUT_OK = 0,     /* success; from next: a row/chunk is available */
    PGSPOUT_DONE = 1,   /* the stream ended normally (or at max_rows: see state) */
    PGSPOUT_AGAIN = 2,  /* PGSPOUT_NONBLOCK: no row yet, poll the socket */
    PGSPOUT_PAUSED = 3, /* PGSPOUT_NONBLOCK: paused and the buffer is empty */

    PGSPOUT_EINVAL = -1,          /* NULL or out-of-range argument */
    PGSPOUT_EOPTION = -2,         /* unknown option key */
    PGSPOUT_EVALUE = -3,          /* malformed or out-of-range option value */
    PGSPOUT_ENOMEM = -4,          /* allocation failed */
    PGSPOUT_ECONNECT = -5,        /* could not connect or authenticate */
    PGSPOUT_ECONN = -6,           /* connection lost or unusable */
    PGSPOUT_ESQL = -7,            /* the server reported an error (SQLSTATE) */
    PGSPOUT_EBUSY = -8,           /* connection/stream in use by another call */
    PGSPOUT_ESTATE = -9,          /* call not valid in this state (closed...) */
    PGSPOUT_ECANCELLED = -10,     /* the stream was cancelled */
    PGSPOUT_ETIMEOUT = -11,       /* the stream deadline ("timeout") passed */
    PGSPOUT_EPAUSE_TIMEOUT = -12, /* paused past pause_timeout (on_pause_timeout=cancel) */
    PGSPOUT_EMEMORY = -13,        /* max_memory / memory_fail exceeded */
    PGSPOUT_ENOTFOUND = -14,      /* registry: no stream with that id */
    PGSPOUT_EINTERNAL = -15,      /* a bug or an unexpected libpq answer */
    PGSPOUT_EINTR = -16           /* the interrupt hook stopped a blocking call */
};

/* Static, never-NULL text for any code (unknown codes included). Any thread. */
PGSPOUT_EXTERN const char *pgspout_strerror(int code);
/* Stable lower-case name of a code ("ok", "done", "einval"...). Any thread. */
PGSPOUT_EXTERN const char *pgspout_code_name(int code);

/* ---------------------------------------------------------------- handles */
typedef struct pgspout_conn pgspout_conn;
typedef struct pgspout_stream pgspout_stream;
typedef struct pgspout_options pgspout_options;
typedef struct pgspout_row pgspout_row;
typedef struct pgspout_chunk pgspout_chunk;
typedef struct pgspout_pool pgspout_pool;

/* Release memory the library handed over (metrics text, registry output). */
PGSPOUT_EXTERN void pgspout_free(void *p);

/* Process-wide log hook for warnings (e.g. memory_warn crossed). level is 1
 * (info), 2 (warning) or 3 (error). May be called from any thread that drives
 * a stream; must not call back into pgspout. NULL removes it. Set it before
 * starting streams; not synchronised with running streams. */
typedef void (*pgspout_log_fn)(int level, const char *message, void *userdata);
PGSPOUT_EXTERN void pgspout_set_log_hook(pgspout_log_fn fn, void *userdata);

/* Log levels of a pgspout_log_record. The plain hook above gets the same
 * numbers, except that DEBUG arrives there as INFO (it promised 1..3). */
#define PGSPOUT_LOG_DEBUG   0
#define PGSPOUT_LOG_INFO    1
#define PGSPOUT_LOG_WARNING 2
#define PGSPOUT_LOG_ERROR   3

/* One log message with what it is about, for hosts that route messages by
 * level and stream (Python's logging, ngx.log). Borrowed: every pointer is
 * valid only during the call. Fields may be added at the end: read a field
 * only if offsetof(field) < size.
 *   size      sizeof(pgspout_log_record) of the library that built it
 *   level     PGSPOUT_LOG_*: server messages by their severity (DEBUG1..5
 *             -> DEBUG; LOG, INFO, NOTICE -> INFO; WARNING -> WARNING),
 *             pgspout's own by their weight
 *   message   the text without the stream prefix the plain hook's text
 *             has ("server NOTICE: <text>", "COMMIT ended in ROLLBACK ...")
 *   label     the `label` option of the stream it is about ("default" when
 *             not set), NULL when no stream is involved (connecting, a
 *             notice outside a stream)
 *   severity  the server's severity, not localized ("NOTICE", "WARNING",
 *             "DEBUG1", "LOG", "INFO"), NULL for pgspout's own messages
 *   sqlstate  the server message's SQLSTATE ("01000"), else NULL */
typedef struct pgspout_log_record {
    size_t size;
    int level;
    const char *message;
    const char *label;
    const char *severity;
    const char *sqlstate;
} pgspout_log_record;
typedef void (*pgspout_log_record_fn)(const pgspout_log_record *record, void *userdata);
/* Process-wide hook that receives every log message as a record; it may be
 * set together with pgspout_set_log_hook (each gets every message; the
 * plain hook's text is "stream <label>: <message>" when there is a label).
 * Same rules as the plain hook: may be called from any thread that drives
 * a stream (the thread of pgspout_stream_open/_next... for a server
 * notice), must not call back into pgspout; NULL removes it; set it before
 * starting streams. */
PGSPOUT_EXTERN void pgspout_set_log_record_hook(pgspout_log_record_fn fn, void *userdata);

/* Interrupt hook of the calling thread, for hosts with their own signal
 * handling (Python's KeyboardInterrupt, a shell's Ctrl-C). While set, every
 * blocking wait of this thread inside pgspout (connect, stream_open, next,
 * next_chunk, a paused or throttled wait) calls fn after a signal
 * interrupted it and at least every 100 ms; a non-zero return makes the
 * blocking call give up with PGSPOUT_EINTR: a server query in progress is
 * cancelled (the stream ends in state CANCELLED and keeps returning EINTR)
 * and the connection stays usable; an interrupted connect gives a failed
 * handle (close it). Cleanup waits (draining a cancelled query, at most
 * cancel_timeout plus a few seconds) do not consult it. fn runs on the
 * calling thread and must not call into pgspout. NULL removes it. Without
 * a hook, waits retry after signals (EINTR) as before. Thread-local. */
typedef int (*pgspout_interrupt_fn)(void *userdata);
PGSPOUT_EXTERN void pgspout_set_interrupt_hook(pgspout_interrupt_fn fn, void *userdata);

/* ---------------------------------------------------------------- options */
/*
 * String key/value options; values accept units where they make sense.
 * Sizes: "65536", "64kB", "64MB", "1GB" (1024-based, B/kB/KB/MB/GB/TB).
 * Durations: "250ms", "30s", "5min", "1h", "2d", bare numbers are seconds;
 * "0" disables a limit. Booleans: on/off, true/false, yes/no, 1/0.
 *
 * Stream keys (default):
 *   chunk_rows (1000)        rows per chunk, 1..10000000
 *   chunk_bytes (1MB)        a chunk also closes at this many bytes
 *   adaptive_chunking (off)  grow/shrink chunk_rows between
 *   chunk_rows_min (100), chunk_rows_max (100000)
 *   max_memory (64MB)        hard bound on bytes a stream buffers: row
 *                            values, their per-row index and field table
 *   memory_warn (0.8)        fraction of max_memory: log + metric once
 *   memory_fail (1.0)        fraction of max_memory: fail with EMEMORY;
 *                            at least memory_warn (else stream_open EVALUE)
 *   max_rows (0 = none)      deliver at most N rows, then state LIMITED
 *   timeout (0 = none)       whole-stream deadline -> ETIMEOUT
 *   statement_timeout (0)    the server's statement_timeout for this stream's
 *                            statement (SET before it when it differs from
 *                            what the session has; 0 = leave the session's
 *                            own value, restoring it with RESET if an
 *                            earlier stream had set one). Not sent inside
 *                            an aborted transaction, where only ROLLBACK
 *                            can run anyway.
 *   cancel_timeout (5s)      how long a cancel may wait for the server to
 *                            take the request; past it the connection is
 *                            closed for safety (a late cancel could hit a
 *                            later query). Also applies to connection keys.
 *   pause_timeout (0 = none) how long a pause may last
 *   on_pause_timeout (resume) resume | cancel (-> EPAUSE_TIMEOUT)
 *   max_rate (0 = none)      rows per second delivered, at most
 *   label ("default")        metrics label, [A-Za-z0-9_.:-]{1,64}; at most 31
 *                            distinct: the rest, and "other" itself, share
 *                            label="other"
 *   expected_rows (0)        enables progress and ETA in stats
 *   metrics (on)             off = this stream records no metrics
 *   progress_rows (0), progress_interval (0): when the progress hook fires
 *   idle_timeout (60s)       registry streams idle longer are reaped
 *   pool (on)                registry: pgspout_registry_open takes the
 *                            connection from the registry's pool for the
 *                            conninfo; off = a connection of the stream's own
 *   arrow (off)              the stream is read as Arrow only
 *                            (pgspout_stream_arrow): results come in binary
 *                            when every column's type has a binary decoder
 *                            here (pgspout_stream_binary), saving the server
 *                            its text output and the client the parsing;
 *                            next, next_chunk and row_json refuse with ESTATE
 *   binary (off)             rows come in binary when every column's type
 *                            is one the pgspout_binary_* functions below
 *                            decode (pgspout_stream_binary says), else in
 *                            text; costs a round trip (Parse and
 *                            Describe, pipelined) before the query;
 *                            row_json and
 *                            chunk_ndjson refuse such a stream with ESTATE
 *   json (off)               the rows will be read as JSON (row_json,
 *                            chunk_ndjson): describe the statement first
 *                            (one round trip) and, when a column's type is
 *                            neither a built-in one nor known to the
 *                            connection yet (composites, arrays of
 *                            domains, enums, types of extensions...), look
 *                            it up in the catalog with one query before the
 *                            statement runs (the connection caches what it
 *                            learnt, composites' fields excepted: a stream
 *                            with one reads them again); a query with
 *                            a column only the server renders (anonymous
 *                            records...: pgspout_row_json) runs as a
 *                            subquery. A connection remembers the
 *                            types of the last 8 statements that needed
 *                            neither the catalog nor the subquery: the
 *                            same text again runs without the describe
 *                            (results in text), its result's types
 *                            checked before the first row; after DDL
 *                            changed them, that run renders the new
 *                            types, except a type the connection never
 *                            looked up, which ends the stream with ESTATE
 *                            ("run it again": the next run describes it
 *                            anew). Ignored with
 *                            binary or arrow. Python and Lua rows="json",
 *                            the command's JSON formats and registry
 *                            streams set it
 *   snapshot ("")            a snapshot id from pg_export_snapshot()
 *                            (pgspout_snapshot_id): the stream runs in a
 *                            transaction of its own, BEGIN ISOLATION LEVEL
 *                            REPEATABLE READ; SET TRANSACTION SNAPSHOT
 *                            '<id>' (the id is checked to be hex digits and
 *                            dashes: it is the one value sent as a
 *                            literal), and sees exactly what the exporting
 *                            transaction sees; that transaction ends
 *                            (ROLLBACK: it only read) as soon as the
 *                            stream's statement does, or when the stream
 *                            fails, is cancelled or closed. The connection
 *                            must be outside a transaction (else ESTATE)
 *                            and the statement not a transaction control
 *                            one (EVALUE). A snapshot whose exporter ended
 *                            fails the open with ESQL, SQLSTATE 22023
 *                            (invalid snapshot identifier) or 55000 (its
 *                            process is gone), the message saying so.
 * Connection keys (pgspout_connect_opts): connect_timeout, keepalives_idle,
 *   keepalives_interval, keepalives_count, tcp_user_timeout, application_name,
 *   cancel_timeout (for pgspout_conn_cancel).
 * Pool keys (pgspout_pool_new, besides the connection keys):
 *   max_size (10)            connections open at most, idle and in use, 1..100000
 *   min_idle (0)             idle connections pgspout_pool_maintain keeps open
 *   idle_timeout (60s)       in a pool's options: an idle connection older
 *                            than this is closed (above min_idle); 0 = never
 *   max_lifetime (30min)     a connection older than this is closed when it
 *                            comes back or is found idle; 0 = no limit
 *   acquire_timeout (30s)    how long pgspout_pool_acquire waits for a
 *                            connection by default; 0 = without limit
 *   label ("default")        names the pool's metrics series
 */

/* New option set with every key at its default; NULL on ENOMEM. Owner thread. */
PGSPOUT_EXTERN pgspout_options *pgspout_options_new(void);
/* Set key to value. Returns PGSPOUT_OK, EINVAL (NULL), EOPTION (unknown key)
 * or EVALUE (bad value); on error the set is unchanged and
 * pgspout_options_error() names the key and the value. */
PGSPOUT_EXTERN int pgspout_options_set(pgspout_options *o, const char *key, const char *value);
/* Current value of key rendered as text into a thread-local buffer valid
 * until the next call from the same thread; NULL for unknown keys. */
PGSPOUT_EXTERN const char *pgspout_options_get(const pgspout_options *o, const char *key);
/* Message of the last failed pgspout_options_set ("" if none). Owned by o. */
PGSPOUT_EXTERN const char *pgspout_options_error(const pgspout_options *o);
PGSPOUT_EXTERN void pgspout_options_free(pgspout_options *o);

/* Row filter: return non-zero to keep the row, 0 to skip it (counted as
 * filtered). Runs on the thread that drives the stream. */
typedef int (*pgspout_filter_fn)(const pgspout_row *row, void *userdata);
PGSPOUT_EXTERN int pgspout_options_set_filter(pgspout_options *o, pgspout_filter_fn fn,
                                              void *userdata);

/* ------------------------------------------------------------ connections */

/* Connect with a libpq conninfo string or URI ("" uses PG* environment
 * variables). Sets client_encoding to UTF8, and runs SET extra_float_digits
 * = 3 so that floats arrive exact whatever the role's or database's defaults
 * (a RESET ALL or DISCARD ALL you run undoes it). Server notifications
 * (LISTEN/NOTIFY) arriving on a pgspout connection are consumed and dropped,
 * counted in pgspout_notifications_dropped_total. Blocks (interruptible with
 * pgspout_set_interrupt_hook; then EINTR). On PGSPOUT_ECONNECT *out
 * is a failed handle whose pgspout_conn_error() says why (passwords are
 * never included); close it. Returns OK, EINVAL, ENOMEM, ECONNECT. */
PGSPOUT_EXTERN int pgspout_connect(const char *conninfo, pgspout_conn **out);
/* As pgspout_connect with connection keys from opts (NULL = none); opts
 * stream keys are ignored. A malformed conninfo is ECONNECT too, with
 * libpq's reason in pgspout_conn_error(). */
PGSPOUT_EXTERN int pgspout_connect_opts(const char *conninfo, const pgspout_options *opts,
                                        pgspout_conn **out);
/* Non-blocking connect, for event loops (libpq's PQconnectStart and
 * PQconnectPoll underneath). Starts connecting to conninfo with the
 * connection keys of opts (NULL = none) and returns at once: PGSPOUT_OK with
 * *out a handle in progress, to be driven with pgspout_conn_poll until that
 * returns OK; or EINVAL, ENOMEM (*out NULL or a failed handle), ECONNECT (a
 * malformed conninfo, or libpq could not start: *out a failed handle whose
 * pgspout_conn_error says why). Close the handle either way. Never waits
 * (host names are resolved by libpq when it starts, which may look them up:
 * give host addresses, hostaddr, where that matters). connect_timeout (the
 * option, else the conninfo's or PGCONNECT_TIMEOUT, at least 2 s as libpq
 * reads it) bounds the whole connect, the session setting included. Owner
 * thread. */
PGSPOUT_EXTERN int pgspout_connect_start(const char *conninfo, const pgspout_options *opts,
                                         pgspout_conn **out);
/* Advance a pgspout_connect_start connection without waiting. Returns
 * PGSPOUT_OK once connected (and session set up as pgspout_connect does;
 * later calls return OK again); PGSPOUT_AGAIN while in progress, with *fd the
 * socket to wait on, for writing when *want_write is 1 else for reading, and
 * *wait_ms the milliseconds until connect_timeout passes (-1 = none): call
 * it again when the socket is ready or that time has passed (calling it
 * earlier is harmless: it checks readiness itself). The socket may change
 * between calls: watch the one of the latest. PGSPOUT_ECONNECT when the
 * connect failed or timed out ("timeout expired" in pgspout_conn_error),
 * again on every later call: close the handle. EINVAL for NULL. Any of the
 * out-pointers may be NULL. A handle from pgspout_connect gives OK or
 * ECONNECT. Owner thread. */
PGSPOUT_EXTERN int pgspout_conn_poll(pgspout_conn *conn, int *fd, int *want_write, int *wait_ms);
/* Close the connection. A stream still open on it is ended first (its server
 * query cancelled; it reports PGSPOUT_ESTATE, state CLOSED) but not freed:
 * pgspout_stream_close it as usual, before or after this call. A connection
 * acquired from a pool is not closed but given back: this is then
 * pgspout_pool_release(its pool, conn) (and pgspout_conn_release gives it
 * back when its stream ends), so bindings whose objects close on garbage
 * collection return pooled connections as they go. NULL is a no-op. Owner
 * thread. */
PGSPOUT_EXTERN void pgspout_conn_close(pgspout_conn *conn);
/* Give up the caller's handle without ending a stream that runs on it (like
 * sqlite3_close_v2): with no stream open the connection closes now, else it
 * closes as soon as that stream ends or is closed, whichever comes first. For
 * garbage-collected bindings, whose destructors run in any order. Do not use
 * conn afterwards. NULL is a no-op. Owner thread. */
PGSPOUT_EXTERN void pgspout_conn_release(pgspout_conn *conn);
/* Last error on the connection ("" if none); valid until the next call on
 * conn. Owner thread. */
PGSPOUT_EXTERN const char *pgspout_conn_error(const pgspout_conn *conn);
/* 1 if the connection can run a stream now, 0 if broken/closed. */
PGSPOUT_EXTERN int pgspout_conn_ok(const pgspout_conn *conn);
/* Ask the server to cancel whatever runs on conn (also a pgspout_stream_open
 * still waiting for its first result). Any thread. Returns OK, EINVAL, ECONN,
 * ENOMEM (nothing was sent; the connection is unaffected). */
PGSPOUT_EXTERN int pgspout_conn_cancel(pgspout_conn *conn);
/* Server version (e.g. 150018) or 0. Owner thread. */
PGSPOUT_EXTERN int pgspout_conn_server_version(const pgspout_conn *conn);

/* ------------------------------------------------------------------ pools */
/*
 * A thread-safe pool of connections to one server: every connection of a
 * pool is opened with the conninfo and connection keys given to
 * pgspout_pool_new, so any of them serves any user. Each pgspout_pool_new
 * makes a pool of its own (two pools with the same conninfo share nothing):
 * a host that wants one pool per conninfo and options keeps them in a table,
 * as it would keep the handles of any other pool library.
 *
 * A connection is acquired, used by one thread at a time like any
 * connection, and released, never closed by its user. What a user leaves
 * behind never reaches the next one:
 *  - at release, a stream still open on the connection is ended (as
 *    pgspout_conn_close ends it: the query cancelled; close the stream
 *    handle as usual). Stopping a running query means reading what the
 *    server had already sent before the cancel took (megabytes for a fast
 *    stream): while two such drains already run in the process, the
 *    connection is closed instead (its query cancelled, its backend ends;
 *    counted closed, reason "discarded"), so that many releases at once
 *    (clients leaving together) do not queue behind one another's drains.
 *    An open or failed transaction is rolled back; the
 *    session is reset with DISCARD ALL (SET SESSION AUTHORIZATION DEFAULT,
 *    RESET ALL, CLOSE ALL, UNLISTEN *, pg_advisory_unlock_all(), DISCARD
 *    PLANS, TEMP and SEQUENCES, DEALLOCATE ALL), then pgspout's own
 *    extra_float_digits is set again (one pipeline); notifications
 *    queued are dropped. A connection that is broken, whose
 *    pgspout_conn_cancel failed (the cancel could still land on a later
 *    query), that is past max_lifetime, or whose reset fails is closed
 *    instead.
 *  - at checkout, an idle connection is taken only if it belongs to this
 *    process (not a fork's parent), pgspout_conn_ok says so, its transaction
 *    status is idle, the server has not closed it meanwhile (a readable
 *    socket is read first: a backend terminated while idle is found without
 *    a round trip) and it is within idle_timeout and max_lifetime; else it
 *    is closed and the next one tried, or a new one opened.
 * Waiting callers are served first come, first served. Fork: a child never
 * reads, writes or closes its parent's pool sockets; its first pool call
 * forgets the connections inherited (counted closed, reason "fork", though
 * the parent keeps using them) and opens its own. Metrics: the
 * pgspout_pool_* series (README "Metrics"), labelled with the pool's label.
 */

/* Make a pool for conninfo with opts (NULL = defaults; connection and pool
 * keys are read, stream keys ignored; copied, so opts may be freed after).
 * Opens no connection: call pgspout_pool_maintain to open min_idle of them
 * now (and to check the conninfo). Returns OK, EINVAL (NULL conninfo or
 * out), EVALUE (min_idle above max_size), ENOMEM; *out NULL on failure.
 * Any thread. */
PGSPOUT_EXTERN int pgspout_pool_new(const char *conninfo, const pgspout_options *opts,
                                    pgspout_pool **out);
/* Take a connection: an idle one that passes the checks above, else a new
 * one while fewer than max_size are open, else wait for a release.
 * timeout_ms bounds the wait: -1 uses the pool's acquire_timeout, 0 never
 * waits, > 0 waits that many milliseconds at most; opening a new connection
 * is bounded by connect_timeout (libpq's, in whole seconds) and the time
 * left. The wait wakes for a release, pgspout_pool_close (ESTATE) and the
 * calling thread's interrupt hook (EINTR: see pgspout_set_interrupt_hook).
 * On OK *out is a connection owned by the caller until
 * pgspout_pool_release; on ECONNECT (or EINTR during a connect) *out is the
 * failed handle, whose pgspout_conn_error says why: release it too (it
 * holds a place in max_size until then); on any other code *out is NULL.
 * Returns OK, EINVAL, ETIMEOUT (every connection stayed in use), EINTR,
 * ESTATE (the pool is closed), ECONNECT, ENOMEM. Any thread. */
PGSPOUT_EXTERN int pgspout_pool_acquire(pgspout_pool *pool, int64_t timeout_ms, pgspout_conn **out);
/* Take an idle connection that passes the checks, at once; never opens a
 * connection and never waits, so an event loop may call it (the checks
 * read what an idle connection has received without waiting). Returns OK
 * (*out as from pgspout_pool_acquire), AGAIN when no idle connection is
 * left (*out NULL: open one with pgspout_pool_acquire off the loop when
 * stats say total < max_size, else wait for a release), EINVAL, ESTATE
 * (closed). Any thread. */
PGSPOUT_EXTERN int pgspout_pool_acquire_idle(pgspout_pool *pool, pgspout_conn **out);
/* Give back a connection acquired from pool, in any state (closing it with
 * pgspout_conn_close does the same): it is reset for
 * the next user or closed (see above). Blocks for the reset (one or two
 * round trips, bounded by cancel_timeout each; an open stream's cancel
 * first). Do not use conn afterwards. Returns OK, or EINVAL (NULL, or conn
 * not out from this pool: nothing done). Call on the connection's owner
 * thread (any thread, when no other uses conn). */
PGSPOUT_EXTERN int pgspout_pool_release(pgspout_pool *pool, pgspout_conn *conn);
/* Housekeeping, for a host's timer (the pool has no thread of its own):
 * close idle connections past idle_timeout (keeping min_idle) or
 * max_lifetime, then open connections until min_idle are idle. Returns OK,
 * or the first failure to connect (ECONNECT, ENOMEM, EINTR; the message goes
 * to the log hooks), EINVAL, ESTATE (closed). Blocks while connecting. Any
 * thread. */
PGSPOUT_EXTERN int pgspout_pool_maintain(pgspout_pool *pool);

/* A snapshot of a pool. Grows at the end only: set .size to
 * sizeof(pgspout_pool_stats) (PGSPOUT_POOL_STATS_INIT). */
typedef struct pgspout_pool_stats {
    size_t size;
    int max_size;
    int total;                  /* connections open or opening: idle + in_use + opening */
    int idle;                   /* in the pool, ready */
    int in_use;                 /* acquired, not yet released */
    int waiting;                /* acquire calls waiting now */
    uint64_t acquires;          /* connections handed out */
    uint64_t waits;             /* acquire calls that had to wait */
    uint64_t timeouts;          /* acquire calls that timed out */
    uint64_t created;           /* connections opened */
    uint64_t closed;            /* connections closed (any reason) */
    int64_t acquire_timeout_ms; /* the pool's acquire_timeout (0: no limit) */
} pgspout_pool_stats;
#ifdef __cplusplus
#define PGSPOUT_POOL_STATS_INIT                                                                    \
    {                                                                                              \
        sizeof(pgspout_pool_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0                                \
    }
#else
#define PGSPOUT_POOL_STATS_INIT                                                                    \
    {                                                                                              \
        .size = sizeof(pgspout_pool_stats)                                                         \
    }
#endif
/* Fill *st (st->size bytes of it). Returns OK or EINVAL. Any thread. */
PGSPOUT_EXTERN int pgspout_pool_stats_get(pgspout_pool *pool, pgspout_pool_stats *st);
/* Close the pool: waiting acquire calls return ESTATE, idle connections are
 * closed now, connections still in use are closed as they are released
 * (pgspout_pool_release stays valid for them); the pool's memory goes with
 * the last of them. No other call on pool may start after this one. NULL is
 * a no-op. Any thread. */
PGSPOUT_EXTERN void pgspout_pool_close(pgspout_pool *pool);

/* ----------------------------------------------- snapshots and partitions */
/*
 * Partitioned reads on one snapshot: a holder exports a snapshot and keeps
 * its transaction open; partitions of a table run as ordinary streams (on
 * other connections, threads, processes or machines) that import it with
 * the stream option "snapshot", so every partition sees exactly the same
 * rows, and together they read every row of that snapshot exactly once.
 * Each partition is a pgspout_stream like any other: limits, stats,
 * metrics, pause and cancel apply.
 */
typedef struct pgspout_snapshot pgspout_snapshot;

/* Connect with conninfo (and the connection keys of opts, NULL = none; its
 * timeout, when set, bounds the export), BEGIN ISOLATION LEVEL REPEATABLE
 * READ, READ ONLY and run pg_export_snapshot(). The transaction stays open,
 * holding the snapshot (and, like any long transaction, keeping VACUUM from
 * removing rows it can see) until pgspout_snapshot_close; the holder's
 * connection must stay alive meanwhile. On failure other than EINVAL/ENOMEM
 * *out is a failed handle whose pgspout_snapshot_error says why: close it.
 * Returns OK, EINVAL, ENOMEM, ECONNECT, ESQL, ECONN, ETIMEOUT, EINTR.
 * Owner thread (a snapshot is used by one thread at a time); blocks. */
PGSPOUT_EXTERN int pgspout_snapshot_export(const char *conninfo, const pgspout_options *opts,
                                           pgspout_snapshot **out);
/* The snapshot id ("00000003-0000001B-1"), "" if the export failed; owned
 * by snap, valid until close. Any thread. */
PGSPOUT_EXTERN const char *pgspout_snapshot_id(const pgspout_snapshot *snap);
/* Why the export failed ("" if it did not); owned by snap. */
PGSPOUT_EXTERN const char *pgspout_snapshot_error(const pgspout_snapshot *snap);
/* 1 while the holder's transaction is open as far as the client knows (a
 * server that ended it is found by the next import), else 0. Owner thread. */
PGSPOUT_EXTERN int pgspout_snapshot_ok(const pgspout_snapshot *snap);
/* End the holder's transaction (ROLLBACK, waited for: at most 5 s) and
 * close its connection: once this returns, importing the snapshot fails
 * (streams that imported it already keep reading in it). NULL is a no-op.
 * Owner thread; blocks. */
PGSPOUT_EXTERN void pgspout_snapshot_close(pgspout_snapshot *snap);

/* A partition plan: a list of partitions, each an SQL text and its text
 * parameters, plus the snapshot id they import (may be ""). Opaque; built by
 * pgspout_plan_make or pgspout_plan_from_json; free with pgspout_plan_free. */
typedef struct pgspout_plan pgspout_plan;

/* What to plan. Grows at the end only: set .size to
 * sizeof(pgspout_plan_spec) (PGSPOUT_PLAN_SPEC_INIT); the rest zero means
 * "not given". Borrowed: read only during pgspout_plan_make.
 *   table       the table as SQL names it ("events", "app.events",
 *               "\"MixedCase\""), given to the server's to_regclass as a
 *               parameter: never spliced. The plan's SQL names it as the
 *               server's format('%I.%I') quotes it.
 *   columns     ncolumns exact column names (as the catalog holds them:
 *               case-sensitive, no quoting), each checked against
 *               pg_attribute and quoted by the server; 0 = every column (*)
 *   where       optional SQL condition ANDed to every partition (the
 *               caller's own SQL, like the sql of pgspout_stream_open), using
 *               $1..$nparams for its values, which go as parameters
 *   nparams, params   those values (text, NULL = SQL NULL)
 *   npartitions the number of partitions, 1..10000
 *   key         NULL: block ranges (table or materialized view only).
 *               Partition i of n reads blocks [B*i/n, B*(i+1)/n) with B =
 *               pg_relation_size / block_size now, as a ctid range scan
 *               (TID Range Scan, PostgreSQL 14+; older servers filter a
 *               sequential scan: correct, not faster); the first has no
 *               lower bound and the last no upper one, so blocks the table
 *               grew by since are read too.
 *               A column (exact name): key ranges [cut i-1, cut i), the
 *               first partition also taking NULL keys, the last no upper
 *               bound.
 *   bounds      with key: nbounds cuts (text in the key's type; sorted and
 *               deduplicated by the server, which refuses one not of the
 *               type): nbounds + 1 partitions at most, npartitions is then
 *               ignored. 0 = npartitions - 1 cuts at even steps through the
 *               key's pg_stats histogram (ANALYZE first; EVALUE without
 *               one); equal cuts merge, so there may be fewer partitions.
 *   snapshot    the snapshot id the plan's partitions import, or NULL.
 * Every bound goes as a parameter after the caller's: $nparams+1 (and
 * $nparams+2). */
typedef struct pgspout_plan_spec {
    size_t size;
    const char *table;
    int ncolumns;
    const char *const *columns;
    const char *where;
    int nparams;
    const char *const *params;
    int npartitions;
    const char *key;
    int nbounds;
    const char *const *bounds;
    const char *snapshot;
} pgspout_plan_spec;
#ifdef __cplusplus
#define PGSPOUT_PLAN_SPEC_INIT                                                                     \
    {                                                                                              \
        sizeof(pgspout_plan_spec), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0                                 \
    }
#else
#define PGSPOUT_PLAN_SPEC_INIT                                                                     \
    {                                                                                              \
        .size = sizeof(pgspout_plan_spec)                                                          \
    }
#endif

/* Build a plan for spec with catalog queries on conn (any connection to the
 * database; it need not be in the snapshot: block counts and statistics
 * only shape the ranges, which together always cover the whole table). Each
 * catalog query is a stream (it needs conn free: EBUSY otherwise) that
 * records no metrics. On failure the reason is in pgspout_conn_error(conn).
 * Returns OK, EINVAL (NULL, a spec field out of range), EVALUE (no such
 * table or column, a name that is not a name, a relation block ranges
 * cannot read, no histogram, a bound not of the key's type, a bad
 * snapshot id), ENOMEM, or what a stream returns (ECONN, EBUSY...).
 * Owner thread of conn; blocks. */
PGSPOUT_EXTERN int pgspout_plan_make(pgspout_conn *conn, const pgspout_plan_spec *spec,
                                     pgspout_plan **out);
/* The plan as one JSON object, to ship to workers:
 * {"pgspout_plan":1,"snapshot":"...","table":"...","partitions":[{"sql":
 * "...","params":["...",null]}]}. Caller frees with pgspout_free; NULL on
 * ENOMEM or a NULL plan. Any thread. */
PGSPOUT_EXTERN char *pgspout_plan_json(const pgspout_plan *plan);
/* Parse what pgspout_plan_json wrote (unknown keys are skipped). Returns
 * OK, EINVAL (NULL), EVALUE (not such a plan: *errmsg, when errmsg is not
 * NULL, says what and where; caller frees it with pgspout_free), ENOMEM. */
PGSPOUT_EXTERN int pgspout_plan_from_json(const char *json, pgspout_plan **out, char **errmsg);
PGSPOUT_EXTERN void pgspout_plan_free(pgspout_plan *plan);
/* Number of partitions (0 for NULL). */
PGSPOUT_EXTERN int pgspout_plan_npartitions(const pgspout_plan *plan);
/* The snapshot id ("" if none) and the table as quoted by the server ("" if
 * the plan came from JSON without one); owned by plan. */
PGSPOUT_EXTERN const char *pgspout_plan_snapshot(const pgspout_plan *plan);
PGSPOUT_EXTERN const char *pgspout_plan_table(const pgspout_plan *plan);
/* Set the snapshot id the partitions import ("" for none). Returns OK,
 * EINVAL, EVALUE (not hex digits and dashes, or too long), ENOMEM. */
PGSPOUT_EXTERN int pgspout_plan_set_snapshot(pgspout_plan *plan, const char *id);
/* Partition i's SQL, parameter count and parameters (owned by plan); NULL,
 * -1 and NULL when i is out of range. */
PGSPOUT_EXTERN const char *pgspout_plan_sql(const pgspout_plan *plan, int i);
PGSPOUT_EXTERN int pgspout_plan_nparams(const pgspout_plan *plan, int i);
PGSPOUT_EXTERN const char *const *pgspout_plan_params(const pgspout_plan *plan, int i);
/* Open partition i as pgspout_stream_open does, with opts (NULL =
 * defaults) and the plan's snapshot as option snapshot when it has one.
 * Returns as pgspout_stream_open (EINVAL also for i out of range). */
PGSPOUT_EXTERN int pgspout_plan_open(pgspout_conn *conn, const pgspout_plan *plan, int i,
                                     const pgspout_options *opts, pgspout_stream **out);

/* ---------------------------------------------------------------- streams */

/* Stream states (pgspout_stream_state) */
enum {
    PGSPOUT_STATE_RUNNING = 0,
    PGSPOUT_STATE_PAUSED = 1,
    PGSPOUT_STATE_DONE = 2,    /* every row delivered */
    PGSPOUT_STATE_LIMITED = 3, /* ended at max_rows; the rest was cancelled */
    PGSPOUT_STATE_FAILED = 4,
    PGSPOUT_STATE_CANCELLED = 5,
    PGSPOUT_STATE_CLOSED = 6
};
/* "running", "paused", "done", "limited", "failed", "cancelled", "closed". */
PGSPOUT_EXTERN const char *pgspout_state_name(int state);

/* Run sql with nparams text parameters ($1..$n, sent separately from the SQL;
 * params[i] NULL is SQL NULL) and wait until the server answers with the first
 * rows, the column description or an error. opts may be NULL (defaults); it
 * is copied, so it may be freed after the call. One stream at a time per
 * connection: a second open while one is active gives EBUSY.
 * Returns OK, or: EINVAL, ENOMEM, EVALUE (inconsistent options), EBUSY, or
 * ECONN for a connection that was already unusable, with *out NULL (the
 * reason in pgspout_conn_error); or, once the stream started, ESQL, ECONN,
 * ETIMEOUT, ECANCELLED, EMEMORY with *out a failed stream (read its error,
 * then close it). Owner thread; blocks. */
PGSPOUT_EXTERN int pgspout_stream_open(pgspout_conn *conn, const char *sql, int nparams,
                                       const char *const *params, const pgspout_options *opts,
                                       pgspout_stream **out);

/* pgspout_stream_open that never waits, for event loops: the same checks
 * and returns (EINVAL, ENOMEM, EVALUE, EBUSY, ECONN with *out NULL), then
 * PGSPOUT_OK with *out a stream whose statement is not sent yet (sql and
 * params are copied). The steps open takes (statement_timeout, the
 * savepoint inside a transaction, option arrow's describe, sending the
 * query) and the wait for the first rows run as the stream is driven: by
 * pgspout_stream_poll or pgspout_stream_next_chunk(PGSPOUT_NONBLOCK), which
 * return PGSPOUT_AGAIN until they need no waiting (poll
 * pgspout_stream_socket, which covers waiting to write a large query too,
 * and pgspout_stream_wait_ms); the errors open would return come from them
 * instead (ESQL, ECONN, ETIMEOUT, ECANCELLED...). Blocking calls
 * (pgspout_stream_next...) drive them too. The columns are known once one of
 * them returned OK or DONE. cancel works at any step. Owner thread. */
PGSPOUT_EXTERN int pgspout_stream_start(pgspout_conn *conn, const char *sql, int nparams,
                                        const char *const *params, const pgspout_options *opts,
                                        pgspout_stream **out);
/* Move the stream along without waiting and without handing rows out:
 * PGSPOUT_OK when rows are buffered, so that the next next, next_chunk, or
 * get_next of pgspout_stream_arrow returns them without waiting; AGAIN
 * (poll pgspout_stream_socket, or wait pgspout_stream_wait_ms), PAUSED
 * (paused with the buffer empty: the descriptor wakes on resume and cancel),
 * DONE, or the stream's negative code as pgspout_stream_next returns it.
 * Works on option-arrow streams too. After pgspout_stream_cancel from any
 * thread, the rest of the cancelled statement is read without waiting too
 * (AGAIN until the server finished it; then ECANCELLED and the connection
 * is idle); a cancel whose request did not reach the server in time still
 * takes the blocking way (at most cancel_timeout plus a few seconds). Owner
 * thread. */
PGSPOUT_EXTERN int pgspout_stream_poll(pgspout_stream *s);

/* Next row. PGSPOUT_OK with *row valid until the next next/next_chunk/close on
 * s; PGSPOUT_DONE at the end (state DONE or LIMITED); a negative code when the
 * stream failed, was cancelled or timed out (state FAILED/CANCELLED). Blocks
 * while the buffer is empty: on the network, or while paused until resume,
 * cancel, pause_timeout or timeout. After DONE or an error, further calls
 * return the same code. Owner thread. */
PGSPOUT_EXTERN int pgspout_stream_next(pgspout_stream *s, const pgspout_row **row);

/* flags for pgspout_stream_next_chunk */
#define PGSPOUT_NONBLOCK 1
/* The chunk's rows count as delivered only as pgspout_stream_handout hands
 * them on: for bindings that convert a whole chunk in one call and then give
 * their user one row at a time. */
#define PGSPOUT_HANDOUT 2

/* Every buffered row not yet delivered, as one chunk of at least one row
 * (reading more from the server first when the buffer is empty). The chunk
 * and its rows are valid until the next next/next_chunk/close on s. With
 * PGSPOUT_NONBLOCK it never waits: PGSPOUT_AGAIN when no row is ready yet
 * (poll pgspout_stream_socket for reading, or wait for the timeout
 * pgspout_stream_wait_ms gives), PGSPOUT_PAUSED when paused and empty.
 * Returns as pgspout_stream_next otherwise. Owner thread. */
PGSPOUT_EXTERN int pgspout_stream_next_chunk(pgspout_stream *s, int flags,
                                             const pgspout_chunk **chunk);
/* After pgspout_stream_next_chunk(PGSPOUT_HANDOUT): count the next n rows of
 * that chunk as handed to the caller (stats rows_delivered, the
 * pgspout_rows_total metric). Call it before giving each row (or batch) away:
 * if the stream was cancelled since (from any thread) or its connection
 * closed, it counts nothing and returns the code pgspout_stream_next would
 * return now (ECANCELLED, ESTATE): the rows still held must then be dropped,
 * exactly as C callers of pgspout_stream_next never see them. Returns OK,
 * EINVAL (NULL, n < 0, or more rows than the chunk has left), or that code.
 * Owner thread. */
PGSPOUT_EXTERN int pgspout_stream_handout(pgspout_stream *s, int n);
PGSPOUT_EXTERN int pgspout_chunk_nrows(const pgspout_chunk *c);
/* Row i (0-based) of c, NULL if out of range; lives as long as c. */
PGSPOUT_EXTERN const pgspout_row *pgspout_chunk_row(const pgspout_chunk *c, int i);

/* Descriptor for an event loop (poll it for reading): readable when the
 * server sent data the stream wants (not while paused or throttled), or when
 * pause/resume/cancel was called from another thread; then call
 * pgspout_stream_next_chunk(PGSPOUT_NONBLOCK) again. Stable for the stream's
 * life (an epoll set on Linux). -1 if s is NULL. */
PGSPOUT_EXTERN int pgspout_stream_socket(const pgspout_stream *s);
/* After PGSPOUT_AGAIN: milliseconds until a deadline or throttle needs the
 * stream to be called again even without I/O; -1 = no such deadline. */
PGSPOUT_EXTERN int pgspout_stream_wait_ms(const pgspout_stream *s);

/* Columns: valid from a successful open until close. */
PGSPOUT_EXTERN int pgspout_stream_ncols(const pgspout_stream *s);
/* Column name (owned by s) or NULL if col is out of range. */
PGSPOUT_EXTERN const char *pgspout_stream_colname(const pgspout_stream *s, int col);
/* Column type OID (e.g. 23 int4, 25 text, 3802 jsonb) or 0 if out of range. */
PGSPOUT_EXTERN unsigned int pgspout_stream_coltype(const pgspout_stream *s, int col);

/* How bindings convert a column, by type OID: one classifier for every
 * language (pgspout_type_kind). Values not listed are KIND_TEXT. */
enum {
    PGSPOUT_KIND_TEXT = 0,    /* text, varchar, bpchar, name, char and the rest */
    PGSPOUT_KIND_BOOL = 1,    /* bool: "t" / "f" */
    PGSPOUT_KIND_INT = 2,     /* int2, int4, oid: fit in 32 bits (oid unsigned) */
    PGSPOUT_KIND_INT8 = 3,    /* int8 */
    PGSPOUT_KIND_FLOAT = 4,   /* float4, float8 (NaN, Infinity, -Infinity) */
    PGSPOUT_KIND_NUMERIC = 5, /* numeric: exact decimal text, or NaN/Infinity */
    PGSPOUT_KIND_BYTEA = 6,   /* bytea in hex ("\\x...") */
    PGSPOUT_KIND_DATE = 7,
    PGSPOUT_KIND_TIME = 8,
    PGSPOUT_KIND_TIMETZ = 9,
    PGSPOUT_KIND_TIMESTAMP = 10,
    PGSPOUT_KIND_TIMESTAMPTZ = 11,
    PGSPOUT_KIND_INTERVAL = 12,
    PGSPOUT_KIND_UUID = 13,
    PGSPOUT_KIND_JSON = 14,    /* json, jsonb */
    PGSPOUT_KIND_ARRAY = 0x100 /* flag: a one-or-more-dimensional array whose
                                  elements have the kind in the low byte */
};
/* PGSPOUT_KIND_* of a type OID, with PGSPOUT_KIND_ARRAY set for the arrays
 * of the scalar kinds above (and of text types). Any thread. */
PGSPOUT_EXTERN int pgspout_type_kind(unsigned int oid);

/* ------------------------------------------------------------------ Arrow */
/* The Arrow C data and C stream interfaces, as the Arrow specification
 * defines them (arrow.apache.org/docs/format/CDataInterface.html and
 * CStreamInterface.html): plain structs, so neither pgspout nor its caller
 * needs an Arrow library. Guarded as the specification asks, so that Arrow's
 * own headers and this one can meet. */
#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE
#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE           2
#define ARROW_FLAG_MAP_KEYS_SORTED    4
struct ArrowSchema {
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;
    void (*release)(struct ArrowSchema *);
    void *private_data;
};
struct ArrowArray {
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;
    void (*release)(struct ArrowArray *);
    void *private_data;
};
#endif
#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE
struct ArrowArrayStream {
    int (*get_schema)(struct ArrowArrayStream *, struct ArrowSchema *out);
    int (*get_next)(struct ArrowArrayStream *, struct ArrowArray *out);
    const char *(*get_last_error)(struct ArrowArrayStream *);
    void (*release)(struct ArrowArrayStream *);
    void *private_data;
};
#endif

/* The rest of s's rows as Arrow record batches: fills *out with an
 * ArrowArrayStream whose schema is a struct of one nullable field per column
 * and whose get_next gives one record batch per chunk (so chunk_rows,
 * chunk_bytes and max_memory bound batches exactly as they bound rows;
 * limits, pause, cancel, stats and metrics apply, and rows count as
 * delivered as batches are made), then the end (a released array).
 * Types (the README has the table): bool, int2/int4/int8, oid (uint32),
 * float4/float8, numeric(p,s) with p <= 38 (decimal128(p,s); other numeric:
 * utf8 with the exact digits), bytea (binary), date (date32), time
 * (time64[us]), timestamp (timestamp[us]), timestamptz (timestamp[us, UTC]),
 * interval (month_day_nano), uuid (fixed_size_binary(16), extension
 * arrow.uuid); everything else, json/jsonb, timetz and arrays included,
 * utf8 with the server's text. +-infinity dates and timestamps become the
 * type's largest and smallest value, as PostgreSQL stores them. A value the
 * type cannot hold (numeric NaN, DateStyle other than ISO) fails get_next
 * with EIO and get_last_error "evalue: ..."; a stream error fails it with
 * EIO and "<code name>: <message> (SQLSTATE xxxxx)", and s keeps the error.
 * out borrows s: use both on s's owner thread. Release out before or after
 * closing s: once s is closed, its callbacks fail with "estate". Returns
 * OK, EINVAL (NULL), ESTATE (s already has an unreleased Arrow stream) or
 * ENOMEM. */
PGSPOUT_EXTERN int pgspout_stream_arrow(pgspout_stream *s, struct ArrowArrayStream *out);
/* 1 when s's results come in binary, 0 when in text. Option arrow: when
 * every column's type is one whose binary form the Arrow exporter decodes
 * (bool, bytea, the text types, json, jsonb, int2/4/8, oid, float4/8,
 * numeric(p <= 38, s), date, time, timestamp(tz), interval, uuid). Option
 * binary: when every column is bool, int2/4/8, float8, numeric, text,
 * varchar, bpchar, name, json, jsonb or uuid, or (under DateStyle ISO) date,
 * time, timetz, timestamp, or timestamptz in a session whose TimeZone is
 * UTC. Any thread. */
PGSPOUT_EXTERN int pgspout_stream_binary(const pgspout_stream *s);

/* ----------------------------------------------------------------- values */
/* Parsers for the text form PostgreSQL sends (what pgspout_row_value returns),
 * for C callers and every binding's converters. Each reads exactly len bytes
 * (no NUL needed), writes *out and returns PGSPOUT_OK, or returns
 * PGSPOUT_EINVAL, leaving *out as it was, for NULL arguments and for text
 * that is not the type's output form (the caller keeps the text then). No
 * allocation, independent of the locale. Any thread. */

/* int2, int4, int8, oid: optional sign, digits; EINVAL beyond int64. */
PGSPOUT_EXTERN int pgspout_parse_int8(const char *v, size_t len, int64_t *out);
/* float4, float8: the nearest double (ties to even, as strtod rounds in the C
 * locale; out-of-range exponents give +-HUGE_VAL or 0), "NaN",
 * "Infinity", "-Infinity". Decimal text only: no spaces, no hex; at most
 * 511 characters. */
PGSPOUT_EXTERN int pgspout_parse_float8(const char *v, size_t len, double *out);
/* uuid: 36 characters, 8-4-4-4-12 hex digits (either case) into 16 bytes. */
PGSPOUT_EXTERN int pgspout_parse_uuid(const char *v, size_t len, unsigned char out[16]);
/* bytea, hex ("\\x0aff") or escape format: the bytes into out, which has
 * room for cap of them (the value never decodes to more than len bytes, and
 * to exactly (len - 2) / 2 in hex); their count into *outlen. EINVAL when
 * malformed or more than cap. */
PGSPOUT_EXTERN int pgspout_parse_bytea(const char *v, size_t len, unsigned char *out, size_t cap,
                                       size_t *outlen);

/* A date, time or timestamp as DateStyle ISO prints it. */
typedef struct pgspout_datetime {
    int year;                 /* astronomical: "0001-01-01 BC" is year 0 */
    int month, day;           /* 1-12, 1-31; year, month and day are 0 for times */
    int hour, minute, second; /* hour 24 only in "24:00:00" */
    int usec;                 /* microseconds, 0-999999 */
    int utc_offset;           /* seconds east of UTC (timetz, timestamptz), else 0 */
    int infinity;             /* +1 "infinity", -1 "-infinity" (dates and timestamps;
                                 every other field 0), else 0 */
} pgspout_datetime;
/* kind is the column's PGSPOUT_KIND_DATE, _TIME, _TIMETZ, _TIMESTAMP or
 * _TIMESTAMPTZ (the form differs: "2024-02-29", "13:05:00.25",
 * "13:05:00+05:30", "2024-02-29 13:05:00", "... 13:05:00.25-08 BC").
 * Fields are range-checked, not calendar-checked. */
PGSPOUT_EXTERN int pgspout_parse_datetime(const char *v, size_t len, int kind,
                                          pgspout_datetime *out);

/* An interval as PostgreSQL keeps it: months, days and microseconds are
 * separate, since a month's and a day's length vary. */
typedef struct pgspout_interval {
    int32_t months;
    int32_t days;
    int64_t usec;
} pgspout_interval;
/* IntervalStyle postgres (the default): "1 year 2 mons -3 days +04:05:06.5". */
PGSPOUT_EXTERN int pgspout_parse_interval(const char *v, size_t len, pgspout_interval *out);

/* Decoders for the binary form of the values of a stream opened with option
 * binary when pgspout_stream_binary(s) is 1 (pgspout_row_value then returns
 * these bytes). Each reads exactly len bytes, writes *out and returns
 * PGSPOUT_OK, or PGSPOUT_EINVAL, leaving *out as it was, for NULL arguments
 * and bytes that are not the type's binary form. No allocation. Any thread. */

/* int2, int4, int8 (2, 4 or 8 bytes). */
PGSPOUT_EXTERN int pgspout_binary_int8(const char *v, size_t len, int64_t *out);
/* float8 (8 bytes) or float4 (4 bytes), exactly (a float4 as the float itself,
 * not as the double its shortest decimal text would give). */
PGSPOUT_EXTERN int pgspout_binary_float8(const char *v, size_t len, double *out);
/* date, time, timetz, timestamp, timestamptz by kind, as pgspout_parse_datetime
 * fills it (timestamptz in UTC: utc_offset 0). */
PGSPOUT_EXTERN int pgspout_binary_datetime(const char *v, size_t len, int kind,
                                           pgspout_datetime *out);
/* The text the server would have sent for a binary value of type oid: every
 * type option binary takes (numeric's exact digits, uuid, jsonb's text, dates
 * and times as DateStyle ISO writes them, timestamptz in UTC) but float8.
 * Writes it NUL-terminated into out (room for cap bytes) and its
 * length into *outlen. EINVAL for other types, malformed bytes, or text
 * longer than cap - 1 (*outlen then says how long: call again with room). */
PGSPOUT_EXTERN int pgspout_binary_text(unsigned int oid, const char *v, size_t len, char *out,
                                       size_t cap, size_t *outlen);

/* Row accessors; a row lives as said where it was returned. */
PGSPOUT_EXTERN int pgspout_row_ncols(const pgspout_row *row);
/* Text value of col (NUL-terminated, "" for NULL), its length in *len when
 * len is not NULL; NULL if col is out of range. In a binary stream
 * (pgspout_stream_binary) the value's binary form, followed by a NUL too. */
PGSPOUT_EXTERN const char *pgspout_row_value(const pgspout_row *row, int col, size_t *len);
/* 1 if SQL NULL, 0 if not, -1 if col is out of range. */
PGSPOUT_EXTERN int pgspout_row_isnull(const pgspout_row *row, int col);

/* Row as JSON text: a single json/jsonb column is handed over untouched
 * (NULL becomes null); otherwise an object keyed by column name, each value
 * as PostgreSQL's row_to_json renders it: numbers, booleans, null, json/jsonb
 * nested as-is, timestamps in ISO 8601 ("2026-12-02T06:16:21.5+05:30", the
 * session's zone), arrays of any type as nested JSON arrays (bounds
 * dropped), composites as objects of their fields, domains as their base
 * type, non-finite numbers and every other value as a string of its text
 * (dates, times, intervals, bytea, uuid, oid, ranges, enums). Types outside
 * pgspout's built-in table (composites, enums, arrays of domains, ...) are
 * known only to a stream opened with option json: on any other stream a
 * column of such a type makes this return ESTATE. Anonymous records (the
 * result carries neither their field names nor their field types),
 * anyarray and types with a function cast to json only the server renders:
 * with option json the query runs as a subquery that passes such columns
 * through to_json (they are json columns then, in pgspout_row_value too);
 * in a statement that cannot be a subquery (INSERT ... RETURNING, a WITH
 * that modifies data, FETCH) they are their text, as a string, and a
 * warning is logged once per stream. One line: raw
 * newlines of json values become spaces. *json is owned by s and valid
 * until the next call on s. Returns OK, EINVAL, ENOMEM, ESTATE (option
 * binary or arrow; a type not looked up).*/
PGSPOUT_EXTERN int pgspout_row_json(pgspout_stream *s, const pgspout_row *row, const char **json,
                                    size_t *len);
/* Every row of c as JSON, one per line, each ending in '\n'. Lifetime and
 * returns as pgspout_row_json. */
PGSPOUT_EXTERN int pgspout_chunk_ndjson(pgspout_stream *s, const pgspout_chunk *c, const char **out,
                                        size_t *len);

/* Stop reading from the server (it blocks on its socket; the connection stays
 * alive). Buffered rows stay consumable. Idempotent. Any thread.
 * Returns OK, EINVAL, ESTATE (stream ended). */
PGSPOUT_EXTERN int pgspout_stream_pause(pgspout_stream *s);
/* Undo pause. Idempotent. Any thread. Returns OK, EINVAL, ESTATE. */
PGSPOUT_EXTERN int pgspout_stream_resume(pgspout_stream *s);
/* Cancel the server query; the stream ends in state CANCELLED (next returns
 * ECANCELLED; pgspout_stream_state says CANCELLED as soon as this returns,
 * and pause/resume give ESTATE) and the connection is usable afterwards.
 * Any thread; returns once the server took the cancel request (at most
 * cancel_timeout; past that the connection is closed for safety when the
 * owner next calls). Returns OK, EINVAL, ESTATE (ended). */
PGSPOUT_EXTERN int pgspout_stream_cancel(pgspout_stream *s);
/* PGSPOUT_STATE_*. Any thread. */
PGSPOUT_EXTERN int pgspout_stream_state(const pgspout_stream *s);

/* Close: a running stream is cancelled and the connection drained so it can
 * run the next stream (or marked broken if that fails; see pgspout_conn_ok).
 * NULL is a no-op. Owner thread. */
PGSPOUT_EXTERN void pgspout_stream_close(pgspout_stream *s);

/* Error text of a failed stream ("" if none), with the limit and observed
 * value for limit errors; owned by s, valid until close. */
PGSPOUT_EXTERN const char *pgspout_stream_error(const pgspout_stream *s);
/* Five-character SQLSTATE of the server error ("" if none). */
PGSPOUT_EXTERN const char *pgspout_stream_sqlstate(const pgspout_stream *s);
/* The negative code the stream failed with, or PGSPOUT_OK. */
PGSPOUT_EXTERN int pgspout_stream_errcode(const pgspout_stream *s);
/* The server's command tag for the stream's statement once it completed
 * ("SELECT 3", "INSERT 0 1", "COMMIT"; "" before that, or when it failed or
 * was stopped early). A COMMIT of a transaction that had failed completes
 * with the tag "ROLLBACK": check it, it is not an error. Owned by s, valid
 * until close. Owner thread. */
PGSPOUT_EXTERN const char *pgspout_stream_command_tag(const pgspout_stream *s);

/* ------------------------------------------------------------------ stats */

/* A snapshot of one stream. Grows at the end only: callers set .size to
 * sizeof(pgspout_stats) (PGSPOUT_STATS_INIT) and the library fills that much.
 * Times are in seconds; -1 means unknown. */
typedef struct pgspout_stats {
    size_t size;
    int state;
    int chunk_rows;          /* current chunk size (adaptive) */
    uint64_t rows_delivered; /* handed to the caller */
    uint64_t rows_received;  /* read from the server */
    uint64_t rows_filtered;  /* rejected by the filter */
    uint64_t bytes_received; /* value bytes read from the server */
    uint64_t chunks;
    uint64_t buffered_rows;
    uint64_t buffered_bytes; /* allocation bytes held now */
    uint64_t peak_buffered_bytes;
    uint64_t pauses;
    double time_to_first_row; /* from open to the first row, -1 if none */
    double elapsed;           /* since open (frozen when the stream ends) */
    double paused_time;       /* total time spent paused */
    double rows_per_sec;      /* over the last second or so */
    double bytes_per_sec;
    int64_t expected_rows; /* from the option, 0 if not given */
    double progress;       /* 0..1 with expected_rows, else -1 */
    double eta;            /* seconds left with expected_rows, else -1 */
} pgspout_stats;
#ifdef __cplusplus /* every member, so -Wmissing-field-initializers stays quiet */
#define PGSPOUT_STATS_INIT                                                                         \
    {                                                                                              \
        sizeof(pgspout_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0             \
    }
#else
#define PGSPOUT_STATS_INIT                                                                         \
    {                                                                                              \
        .size = sizeof(pgspout_stats)                                                              \
    }
#endif

/* The members of pgspout_stats after size, in order, for bindings that build
 * their dict/table from it: name (as in pgspout_stream_stats_json), type,
 * offsetof. Doubles may be -1 (unknown): every language gives -1 too. */
enum {
    PGSPOUT_FIELD_INT = 1,    /* int */
    PGSPOUT_FIELD_UINT64 = 2, /* uint64_t */
    PGSPOUT_FIELD_INT64 = 3,  /* int64_t */
    PGSPOUT_FIELD_DOUBLE = 4, /* double */
    PGSPOUT_FIELD_STATE = 5   /* int PGSPOUT_STATE_*; bindings give its name */
};
typedef struct pgspout_stats_field {
    const char *name;
    int type;
    size_t offset;
} pgspout_stats_field;
/* The static table; *n (when not NULL) gets its length. Any thread. */
PGSPOUT_EXTERN const pgspout_stats_field *pgspout_stats_fields(int *n);

/* Fill *st (st->size bytes of it). Any thread. Returns OK or EINVAL. */
PGSPOUT_EXTERN int pgspout_stream_stats(const pgspout_stream *s, pgspout_stats *st);
/* The same snapshot as a JSON object; caller frees with pgspout_free. */
PGSPOUT_EXTERN char *pgspout_stream_stats_json(const pgspout_stream *s);

/* Progress hook: called on the driving thread every progress_rows rows and/or
 * progress_interval, and once at the end, with a snapshot. */
typedef void (*pgspout_progress_fn)(const pgspout_stats *st, void *userdata);
PGSPOUT_EXTERN int pgspout_options_set_progress(pgspout_options *o, pgspout_progress_fn fn,
                                                void *userdata);

/* ---------------------------------------------------------------- metrics */

/* Prometheus text exposition (format 0.0.4) of process-wide metrics; caller
 * frees with pgspout_free. NULL on ENOMEM. Any thread. */
PGSPOUT_EXTERN char *pgspout_metrics_prometheus(void);
/* The same as one JSON object; caller frees with pgspout_free. Any thread. */
PGSPOUT_EXTERN char *pgspout_metrics_json(void);
/* Zero every counter and histogram (gauges of live streams stay). For tests.*/
PGSPOUT_EXTERN void pgspout_metrics_reset(void);

/* --------------------------------------------------------------- registry */
/*
 * A process-wide table of streams addressed by id, for hosts where one stream
 * is driven from different threads or interpreters over time (OpenResty's
 * ngx.run_worker_thread). All functions are thread-safe; calls on one id are
 * serialised (a second concurrent fetch waits). Streams idle longer than
 * idle_timeout are reaped: the query is cancelled, the id forgotten.
 *
 * Connections: each registry stream runs on a connection of its own while
 * it runs, taken from a pool - the caller's (pgspout_registry_open_pool), or
 * for pgspout_registry_open one the registry keeps for the life of the
 * process per conninfo and connection/pool keys of opts (connect_timeout,
 * keepalives_*, tcp_user_timeout, application_name, cancel_timeout,
 * max_size, min_idle, max_lifetime, acquire_timeout; metrics label
 * "registry"; its idle connections close after the pool default of 60s).
 * Option pool=off opts out: the stream connects on its own and closes its
 * connection at the end, as every stream did before pools. The connection
 * goes back to its pool (pgspout_pool_release: reset, or closed) as soon as
 * the stream is over. A pooled stream that starts outside a transaction (and
 * whose statement neither begins nor ends one) sends the pool's reset in the
 * same pipeline as its statement, behind its Sync: the server resets the
 * session as soon as the statement ends (a statement's error or a cancel
 * does not stop it; if the reset itself fails, the release resets the usual
 * way), and the release only reads its results - no round trip of its own.
 * It is over at - the fetch that reports DONE or an error, a
 * pgspout_registry_cancel (at once when no fetch holds the stream, else as
 * that fetch returns), pgspout_registry_close, or the reaper - while the id
 * stays valid until closed or reaped: later fetches repeat the end, stats
 * keep answering. The registry's background thread (see
 * pgspout_registry_reap) also calls pgspout_pool_maintain on the registry's
 * own pools every second (never on a caller's pool).
 */

/* Open the stream on a connection from the registry's pool for conninfo (or
 * a connection of its own with pool=off: see above) and register it. Waits
 * for a pooled connection up to the acquire_timeout of opts (ETIMEOUT when
 * the pool stays exhausted). On success *id > 0. On failure returns the code
 * and, when errmsg is not NULL, a message in *errmsg (caller frees with
 * pgspout_free). */
PGSPOUT_EXTERN int pgspout_registry_open(const char *conninfo, const char *sql, int nparams,
                                         const char *const *params, const pgspout_options *opts,
                                         uint64_t *id, char **errmsg);
/* The same on a connection acquired from pool (the pool's acquire_timeout
 * bounds the wait; ETIMEOUT, or ESTATE for a closed pool). The pool must
 * stay open until the stream's connection is back (its end, cancel, close or
 * reap); pgspout_pool_close before that is allowed too (the connection is
 * then closed as it comes back). opts pool key ignored. Any thread. */
PGSPOUT_EXTERN int pgspout_registry_open_pool(pgspout_pool *pool, const char *sql, int nparams,
                                              const char *const *params,
                                              const pgspout_options *opts, uint64_t *id,
                                              char **errmsg);
/* The registry's own pool for conninfo and the connection/pool keys of opts
 * (NULL = defaults), the one pgspout_registry_open with the same conninfo
 * and keys uses; made on first use (no connection opened yet), then the
 * same pool for every caller in the process - any thread, any interpreter.
 * Borrowed: valid for the life of the process; never pgspout_pool_close it.
 * Maintained by the registry's background thread (started by this call).
 * Returns OK, EINVAL (NULL conninfo or out), EVALUE (min_idle above
 * max_size), ENOMEM. */
PGSPOUT_EXTERN int pgspout_registry_pool(const char *conninfo, const pgspout_options *opts,
                                         pgspout_pool **out);
/* Next rows as NDJSON (pgspout_row_json per row, one per line) in *out
 * (caller frees with pgspout_free), row count in *nrows. max_rows 0 hands
 * over the stream's next chunk; max_rows > 0 waits only for the first rows,
 * then adds rows already received without waiting, up to max_rows (a
 * partly served chunk is kept for the next fetch: every row goes out exactly
 * once). Returns OK, DONE (*out NULL), ENOTFOUND, or the stream's error code
 * (reported by the fetch after the rows before it) with the message in
 * *errmsg when errmsg is not NULL. */
PGSPOUT_EXTERN int pgspout_registry_fetch(uint64_t id, int max_rows, char **out, size_t *len,
                                          int *nrows, char **errmsg);
/* Pause or resume the stream (pgspout_stream_pause/resume). These two,
 * pgspout_registry_stats_json and pgspout_registry_list_json never block,
 * whatever runs at the same time: when one of them is the last to hold a
 * stream that another thread closed meanwhile, the teardown (a cancel, a
 * drain, the pool's reset) goes to the registry's thread. OK, ENOTFOUND,
 * or ESTATE (the stream ended). */
PGSPOUT_EXTERN int pgspout_registry_pause(uint64_t id);
PGSPOUT_EXTERN int pgspout_registry_resume(uint64_t id);
/* Cancel the stream's query; with no fetch running on it, the stream ends
 * now (fetch then returns ECANCELLED) and its connection goes back to its
 * pool; else the running fetch does that as it returns. */
PGSPOUT_EXTERN int pgspout_registry_cancel(uint64_t id);
/* Stats of one stream as JSON (caller frees); NULL if not found. */
PGSPOUT_EXTERN char *pgspout_registry_stats_json(uint64_t id);
/* JSON array of {"id":..., "sql":..., "stats":{...}} for every registered
 * stream; caller frees with pgspout_free. */
PGSPOUT_EXTERN char *pgspout_registry_list_json(void);
/* Close and forget the stream (cancelling a running query; its connection
 * back to its pool, which may close it instead: see the pools). OK or
 * ENOTFOUND. */
PGSPOUT_EXTERN int pgspout_registry_close(uint64_t id);
/* Reap streams idle past their idle_timeout now; returns how many. (The
 * registry also reaps from a background thread once a second.) */
PGSPOUT_EXTERN int pgspout_registry_reap(void);

#ifdef __cplusplus
}
#endif
#endif /* PGSPOUT_H */
