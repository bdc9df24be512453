/* internal.h - the handles behind the opaque types, shared by the core files. */
#ifndef PGSPOUT_INTERNAL_H
#define PGSPOUT_INTERNAL_H

#include "buf.h"
#include "json.h"
#include "metrics.h"
#include "options.h"
#include "pgspout.h"
#include "wait.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct pgs_described pgs_described;

/* Relaxed atomics for the stream's counters: one writer (the owner thread),
 * read by any-thread calls such as stats. ADD needs no lock prefix. */
#define LOAD(x)     atomic_load_explicit(&(x), memory_order_relaxed)
#define STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define ADD(x, v)   STORE(x, LOAD(x) + (v))

struct pgspout_conn {
    PGconn *pg;             /* non-blocking mode: every wait is pgspout's */
    pthread_mutex_t lock;   /* guards pg for any-thread cancels against close */
    pgspout_stream *active; /* the stream running on this connection */
    int broken;             /* desynchronised or lost: no more streams */
    int released;           /* pgspout_conn_release: close when active ends */
    /* statement_timeout as pgspout left it on the session: > 0 a value it
     * SET, 0 the session's own (never touched, or RESET), -1 unknown (a SET
     * or RESET inside a transaction that may have been rolled back) */
    int64_t statement_timeout_ms;
    int statement_timeout_in_tx; /* ... and that SET/RESET ran in a transaction block */
    int64_t cancel_timeout_ms;   /* for pgspout_conn_cancel */
    uint64_t notified;           /* notifications dropped (pgs_conn_drop_notifies) */
    _Atomic unsigned cancel_gen; /* bumped by pgspout_conn_cancel */
    pid_t pid;                   /* the process that connected: a forked child
                                    must not read, write or cancel on its behalf */
    unsigned fork_gen;           /* forks seen when it connected (conn.c) */
    char *err;                   /* malloc'd message, NULL = none */
    /* a pgspout_conn_cancel that failed or timed out: the request may still
     * reach the server later and hit another query (any thread sets it) */
    _Atomic int cancel_failed;
    /* pool.c: the pool it belongs to (NULL for a plain connection), its
     * link in the idle list, when it connected and since when it is idle
     * (monotonic ns), and whether it is out (acquired) */
    pgspout_pool *pool;
    pgspout_conn *pool_next;
    int64_t pool_born_ns, pool_idle_ns;
    unsigned pool_gen; /* the pool's fork generation when it joined */
    int pool_out;
    /* the pool's reset follows the statement of the stream that runs on
     * it (option pool_one_stream: stream.c), until pgs_conn_finish_reset */
    int reset_queued;
    int syncs; /* a pipeline's Syncs sent and not yet read (next_result) */
    /* pgspout_connect_start: 1 while libpq connects (PQconnectPoll), 2
     * while pgspout's session setting runs, 0 once done or failed */
    int connecting;
    int connect_write;        /* PQconnectPoll wants the socket writable */
    int64_t connect_t0;       /* monotonic ns, for the connect metrics */
    int64_t connect_deadline; /* 0 = none */
    /* what the catalog said of the types JSON rows met (jsontypes.c); the
     * stream running on the connection uses it (NULL until the first) */
    pgs_typecache *types;
    /* statements option json described on it (described.c), or NULL */
    pgs_described *described;
};

/* A field of a buffered row: value at data + off, len -1 for SQL NULL. */
typedef struct pgs_field {
    uint32_t off;
    int32_t len;
} pgs_field;

/* A row copied into the stream's arena (values NUL-terminated). */
struct pgspout_row {
    const char *data;
    const pgs_field *f;
    int ncols;
};

struct pgspout_chunk {
    const pgspout_row *rows;
    int n;
};

struct pgspout_stream {
    pgspout_conn *conn;
    pgspout_options opt;
    pgs_label_metrics *metrics; /* NULL when metrics are off */

    /* columns */
    PGresult *meta; /* attribute descriptions only (PQcopyResult) */
    int ncols;
    int json_single;             /* one json/jsonb column: hand it over as-is */
    int *json_kind;              /* per column PGS_JSON_* */
    const pgs_jtype **json_type; /* per column: its tree (PGS_JSON_TREE) */
    int json_trees;              /* some column is PGS_JSON_TREE */
    int json_unresolved;         /* a PGS_JSON_UNRESOLVED column, or -1 */
    int json_warned;             /* a value not of its type's shape was logged */
    pgs_jtypes jtypes;           /* the trees, and the catalog's rows */
    pgs_jscratch jscratch;
    unsigned int *desc_oids; /* option json: the columns' types, described */
    int ndesc;
    PGresult *desc;      /* ... and their names (PQcopyResult of the Describe) */
    char *json_sql;      /* ... the statement as a subquery (jsonwrap.c), or NULL */
    int unnamed;         /* described as the unnamed statement, which is still there */
    int types_looked_up; /* option json: the catalog was asked for its types */
    /* option json: the connection described the statement before (entry of
     * described.c, or -1): desc_oids are those types, to check the first
     * result against (set_meta); 2 once they turned out to differ */
    int desc_entry, desc_cached;
    char **json_key; /* per column "\"name\":" pre-escaped */
    size_t *json_key_len;

    /* the buffer: rows of the current chunk, their values in one arena that
     * never moves while it holds rows (it grows only when empty) */
    pgspout_row *rows;
    int nrows, cap;
    _Atomic int pos; /* next row to hand out */
    char *arena;
    size_t arena_cap, arena_used;
    PGresult *carry;               /* a result whose rows did not fit the chunk */
    int carry_idx;                 /* its next row */
    int *lens;                     /* per column scratch for copying a row */
    int grow_arena;                /* the last chunk found the arena too small */
    size_t target_bytes;           /* a chunk closes at this many arena bytes */
    size_t warn_bytes, fail_bytes; /* memory_warn/_fail times max_memory */
    _Atomic uint64_t buffered_bytes;
    _Atomic uint64_t peak_buffered;
    pgspout_chunk view;
    pgs_buf json;

    /* lifecycle */
    _Atomic int ended; /* 0 running, else a PGSPOUT_STATE_* end state */
    _Atomic int pause_req;
    _Atomic int cancel_req;
    pthread_mutex_t ctl;          /* orders cancel (any thread) against the end */
    _Atomic int server_done;      /* the query is finished on the server side */
    int savepoint;                /* opened inside a transaction: runs under one */
    int own_tx;                   /* option snapshot: runs in a transaction of its own */
    int commits;                  /* the statement is a COMMIT (or END) */
    int pend_state;               /* end found while rows were still buffered */
    int pend_code;                /* ... and the code next returns for it */
    unsigned cancel_gen;          /* conn->cancel_gen when the stream opened */
    int result_code;              /* what next returns after the end */
    int limit_more;               /* max_rows cut rows of a result short */
    char cmd_tag[64];             /* the statement's command tag, once complete */
    int limit_reason;             /* PGS_LIMIT_* for a limited/limit-failed end */
    int warned;                   /* memory_warn crossed already */
    _Atomic int64_t chunk_target; /* current chunk_rows (adaptive); stats reads it */
    int64_t row_target;           /* this chunk's row target (fill): add_result stops there */
    pgs_wake wake;
    int sock_dry;     /* a read found the socket empty: wait before reading */
    int epfd;         /* pgspout_stream_socket: wake fd + server socket */
    int sock_watched; /* the server socket's events in epfd (0: not in it) */
    char *err;
    char sqlstate[6];
    void *arrow;                 /* the Arrow stream exporting it (arrow.c), detached at close */
    int binary;                  /* option arrow or binary: results came in binary */
    struct pgs_opening *opening; /* pgspout_stream_start: the steps still to run */
    _Atomic int cancel_sent;     /* pgspout_stream_cancel's request reached the server */
    int64_t drain_until;         /* non-blocking drain after a cancel: give up then */
    int drain_saw;               /* ... and what it discarded (DRAINED_*) */
    int drain_counted;           /* pgs_stream_release counted stop_server's drain */

    /* time (monotonic ns); the atomics are read by stats from any thread */
    int64_t t_open;
    _Atomic int64_t t_first_row;
    _Atomic int64_t t_end;
    _Atomic int64_t pause_started;
    _Atomic int64_t paused_ns;
    _Atomic uint64_t pauses;
    int64_t deadline;       /* 0 = none */
    int64_t throttle_until; /* max_rate: no more rows before this */
    int64_t wait_until;     /* for pgspout_stream_wait_ms */

    /* counters (owner thread writes, stats reads) */
    _Atomic uint64_t rows_received;
    _Atomic uint64_t rows_filtered;
    _Atomic uint64_t bytes_received;
    _Atomic uint64_t chunks;
    _Atomic uint64_t delivered_base; /* rows delivered before the current chunk */
    _Atomic int nrows_pub;           /* nrows, published for stats (any thread) */
    uint64_t metrics_delivered;      /* rows already flushed to the metrics */
    uint64_t rate_bytes_seen;        /* bytes_received at the last chunk */
    uint64_t filtered_seen;          /* rows_filtered at the last chunk */

    /* rate window for rows/s and bytes/s */
    _Atomic int64_t rate_t;
    _Atomic uint64_t rate_rows, rate_bytes;
    _Atomic uint64_t rows_per_sec_x1000, bytes_per_sec_x1000;

    /* adaptive chunking */
    int adapt_votes;
    int64_t adapt_last;

    /* progress hook */
    uint64_t progress_next_rows;
    int64_t progress_next_t;
};

/* conn.c */
/* 1 if this process is the one that opened c (not a fork child). */
int pgs_conn_owned(const pgspout_conn *c);
void pgs_conn_set_error(pgspout_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Send a cancel request for whatever runs on c and wait up to timeout_ms
 * for the server to take it: 0, or -1 (failed, or not within the time: the
 * cancel may still land later), or -2 (out of memory: nothing was sent).
 * Any thread. */
int pgs_conn_send_cancel(pgspout_conn *c, int64_t timeout_ms);
/* Consume and drop the notifications libpq has queued (counted, logged). */
void pgs_conn_drop_notifies(pgspout_conn *c);

/* stream.c: end a stream whose connection is closing (it stays allocated) */
void pgs_stream_detach(pgspout_stream *s);
/* Detach the stream of a pooled connection being given back; 1 = its
 * statement was left running (drains busy): close the connection. */
int pgs_stream_release(pgspout_stream *s);
/* stream.c: run sql (one or more statements, simple protocol) on an idle c
 * before deadline (monotonic ns, 0 = none). PGSPOUT_OK when every result is
 * COMMAND_OK or TUPLES_OK; ESQL (the server's message goes on c's error);
 * ETIMEOUT or ECONN with c marked broken; EINTR (c stays usable). */
int pgs_conn_exec(pgspout_conn *c, const char *sql, int64_t deadline);
/* stream.c: as pgs_conn_exec, for n single statements sent at once in one
 * pipeline (one round trip); the first to fail makes the server skip the
 * rest. Each statement runs as if sent alone (DISCARD ALL first too: only
 * a statement an earlier one of the pipeline left uncommitted is "in a
 * transaction block"). */
int pgs_conn_exec_pipeline(pgspout_conn *c, const char *const *sqls, int n, int64_t deadline);
/* described.c: the types of a statement c described before (text and
 * nparams equal): an entry number (for pgs_described_drop) with *oids and
 * *ncols set, or -1. */
int pgs_described_find(const pgspout_conn *c, const char *sql, int nparams,
                       const unsigned int **oids, int *ncols);
/* described.c: remember them (copied; without memory, nothing is kept) */
void pgs_described_put(pgspout_conn *c, const char *sql, int nparams, const unsigned int *oids,
                       int ncols);
void pgs_described_drop(pgspout_conn *c, int entry);
void pgs_described_free(pgspout_conn *c);

/* pool.c: the statements that reset a released connection, in order */
enum { PGS_POOL_RESET_N = 2 };
extern const char *const pgs_pool_reset_sql[PGS_POOL_RESET_N];
/* stream.c: read the rest of a stream's pipeline and the results of the
 * reset queued behind its statement (c->reset_queued), before deadline.
 * PGSPOUT_OK when the reset ran; ESQL when the server refused it (a
 * transaction the statement left open, a cancel that landed on it: c is
 * idle or in a transaction, to be reset the usual way); ETIMEOUT or ECONN
 * with c marked broken. */
int pgs_conn_finish_reset(pgspout_conn *c, int64_t deadline);
/* stream.c: as pgs_conn_exec, and *value (malloc'd; NULL on failure) is the
 * first value of the last result that had rows. ENOMEM when there was none
 * (or no memory for it). */
int pgs_conn_exec_value(pgspout_conn *c, const char *sql, int64_t deadline, char **value);
/* conn.c: the process's fork count (pgs_conn_owned compares against it) */
unsigned pgs_fork_generation(void);

/* arrow.c: the exporter of a stream being closed stops using it */
void pgs_arrow_detach(pgspout_stream *s);
/* arrow.c: the exporter decodes this type's binary form */
int pgs_arrow_binary_ok(unsigned int oid, int typmod);
/* binary.c: option binary takes this type in binary on pg's session */
int pgs_rows_binary_ok(unsigned int oid, PGconn *pg);
/* stream.c: pgspout_stream_next_chunk without its checks (the exporter's
 * way to the rows of an option-arrow stream) */
int pgs_stream_next_chunk(pgspout_stream *s, int flags, const pgspout_chunk **chunk);

/* json.c helpers bound to a stream (stream.c) */
int pgs_stream_render_row(pgspout_stream *s, const pgspout_row *row, pgs_buf *b);

/* transport.c: the row transport of the libpq this process runs with */
/* PGRES_TUPLES_CHUNK of libpq >= 17 (a chunk of rows in chunked-rows mode),
 * which older headers lack. Compare it with (int)PQresultStatus(). */
#define PGS_TUPLES_CHUNK 12
/* 1 if that libpq has chunked-rows mode (resolved once). Any thread. */
int pgs_chunked_rows(void);
/* Right after sending a query on pg: have libpq return its rows in results
 * of at most chunk_rows rows (chunked mode), else one row per result
 * (single-row mode). Nonzero on success, as libpq's calls. */
int pgs_set_row_mode(PGconn *pg, int chunk_rows);

/* log hooks (stream.c): pgs_log for a message about no stream, pgs_log_ex
 * with the stream's label and, for a server message, its severity and
 * SQLSTATE (each may be NULL). level is a PGSPOUT_LOG_*. */
void pgs_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pgs_log_ex(int level, const char *label, const char *severity, const char *sqlstate,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
