/* pgspout - stream a query's rows as NDJSON, CSV, TSV or one JSON array.
 *
 *   pgspout [OPTION]... [DBNAME [USERNAME]]
 *
 * The connection options and arguments are psql's (-h -p -U -d -w -W, a
 * bare DBNAME [USERNAME], -d taking a conninfo or URI as well); the SQL
 * comes from -c SQL, -f FILE or stdin, its parameters from repeated
 * --param VALUE, the rows go to stdout or, atomically, to -o FILE. See
 * pgspout.1 beside this file.
 *
 * Exit status: 0 success, 1 query/stream/output error, 2 usage error, 3
 * connection error, 130 interrupted (SIGINT/SIGTERM cancel the server query
 * first).
 */
#include "output.h"
#include "partitions.h"

#include <pgspout.h>
#include <libpq-fe.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_QUERY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, EXIT_INTERRUPTED = 130 };
/* getopt codes of the options that have only a long name */
enum {
    OPT_PARAM = 256,
    OPT_NULL_PARAM,
    OPT_NO_HEADER,
    OPT_CHUNK_ROWS,
    OPT_MAX_ROWS,
    OPT_TIMEOUT,
    OPT_OPTION,
    OPT_PROGRESS,
    OPT_EXPECTED,
    OPT_METRICS,
    OPT_HELP,
    OPT_VARIABLE, /* psql's -v/--set/--variable: refused */
    OPT_DSN,      /* the old --dsn: refused */
    OPT_PARTITIONS,
    OPT_TABLE,
    OPT_COLUMN,
    OPT_WHERE,
    OPT_KEY,
    OPT_BOUND,
};

static void usage(FILE *f)
{
    fprintf(f,
            "pgspout streams the rows of one query as NDJSON, CSV, TSV or a JSON array.\n"
            "\n"
            "Usage:\n"
            "  pgspout [OPTION]... [DBNAME [USERNAME]]\n"
            "\n"
            "General options:\n"
            "  -c, --command=SQL        run this query\n"
            "  -f, --file=FILENAME      read the query from FILENAME (\"-\" = stdin); without\n"
            "                           -c or -f the query is read from stdin\n"
            "      --param=VALUE        a query parameter: the first is $1, the next $2, ...\n"
            "                           (sent separately from the SQL, never interpolated)\n"
            "      --null-param=TEXT    a --param equal to TEXT is sent as SQL NULL\n"
            "  -V, --version            output version information, then exit\n"
            "  -?, --help               show this help, then exit\n"
            "\n"
            "Output options:\n"
            "  -o, --output=FILENAME    write the rows to FILENAME (atomically: only a stream\n"
            "                           that ended well replaces it) instead of stdout\n"
            "  -F, --format=FORMAT      ndjson (default), csv, tsv or json (one array)\n"
            "      --no-header          no column-name line for csv/tsv\n"
            "      --progress           a progress line on stderr: rows, bytes received from\n"
            "                           the server and bytes written, ETA when the total is known\n"
            "      --expected-rows=N    total rows for the ETA (default: planner estimate)\n"
            "      --metrics=FILENAME   write Prometheus metrics text to FILENAME at the end\n"
            "\n"
            "Partitioned reads (one file per partition, all in one snapshot):\n"
            "      --partitions=N       read the --table in N partitions, in parallel, each on\n"
            "                           its own connection, into its own file of -o DIR (its\n"
            "                           part-NNN.FORMAT) or -o PATTERN ({} = the partition\n"
            "                           number, e.g. -o out/t-{}.csv); block ranges (ctid),\n"
            "                           or ranges of --key (--progress: one line for them all)\n"
            "      --table=TABLE        the table, as SQL names it (schema.table, \"Quoted\")\n"
            "      --column=NAME        a column to read (exact name; repeat; default all)\n"
            "      --where=SQL          a condition for every partition ($1.. from --param)\n"
            "      --key=COLUMN         partition by ranges of COLUMN (its pg_stats histogram)\n"
            "      --bound=VALUE        a cut between key ranges (repeat; N-1 of them)\n"
            "\n"
            "Stream options:\n"
            "      --chunk-rows=N       rows per chunk (option chunk_rows)\n"
            "      --max-rows=N         stop after N rows (option max_rows)\n"
            "      --timeout=DURATION   whole-stream deadline, e.g. 30s (option timeout)\n"
            "      --option=KEY=VALUE   a stream option (max_memory=64MB, label=x, ...) or a\n"
            "                           connection option (connect_timeout=5s, keepalives_idle,\n"
            "                           keepalives_interval, keepalives_count, tcp_user_timeout,\n"
            "                           application_name)\n"
            "\n"
            "Connection options:\n"
            "  -h, --host=HOSTNAME      database server host or socket directory\n"
            "  -p, --port=PORT          database server port\n"
            "  -U, --username=USERNAME  database user name\n"
            "  -d, --dbname=DBNAME      database name, or a connection string or URI\n"
            "  -w, --no-password        never prompt for password\n"
            "  -W, --password           force password prompt (should happen automatically)\n"
            "Unset, these come from the PG* environment variables, services and .pgpass,\n"
            "as for psql.\n"
            "\n"
            "Rows are written as they arrive. Exit status: 0 ok, 1 query or output error,\n"
            "2 usage, 3 connection, 130 interrupted (SIGINT or SIGTERM: the server query is\n"
            "cancelled first). See man pgspout.\n");
}

/* A usage error: the message, psql's hint line, exit status 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pgspout: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry \"pgspout --help\" for more information.\n", stderr);
    return EXIT_USAGE;
}

/* ------------------------------------------------------------ signals
 * SIGINT and SIGTERM are blocked in every thread but signal_thread, which
 * turns them into a cancel of whatever the main thread is waiting for. What
 * there is to cancel depends on the phase, which the main thread changes
 * under g_lock (so a handle is never cancelled while it is being closed):
 *
 *   PH_CONNECT  prompting for a password or connecting: there is no handle
 *               to cancel and no row has been written yet, so the signal
 *               thread exits 130 at once (restoring the terminal's echo and
 *               removing the -o temporary file first).
 *   PH_QUERY    connected, running the planner estimate or waiting in
 *               pgspout_stream_open: pgspout_conn_cancel. A cancel request
 *               can reach the server before the query it is meant for (the
 *               main thread may be about to send it), so it is repeated every
 *               CANCEL_REPEAT_MS while the phase lasts.
 *   PH_STREAM   streaming: pgspout_stream_cancel; the main thread's next
 *               pgspout_stream_next_chunk reports ECANCELLED.
 *   PH_PARTS    --partitions: parts_cancel cancels every partition's stream
 *               (and the ones not yet open never start).
 *   PH_END      the stream is closed: nothing left to cancel.
 *
 * A second signal exits 130 at once, whatever the phase (e.g. stdout is a
 * pipe nobody reads). Any signal received makes the exit status 130. */
enum { PH_CONNECT, PH_QUERY, PH_STREAM, PH_PARTS, PH_END };
enum { CANCEL_REPEAT_MS = 500 };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_phase = PH_CONNECT; /* under g_lock */
static int g_interrupted;        /* under g_lock */
static pgspout_conn *g_conn;     /* under g_lock: set for PH_QUERY */
static pgspout_stream *g_stream; /* under g_lock: set for PH_STREAM */
static char *g_tmp_path;         /* under g_lock: the -o temporary file, until renamed */
static int g_tty_fd = -1;        /* under g_lock: the terminal whose echo is off */
static struct termios g_tty_saved;

/* Called with g_lock held. */
static void exit_interrupted_now(void)
{
    static const char msg[] = "pgspout: interrupted\n";
    if (g_tty_fd >= 0) {
        tcsetattr(g_tty_fd, TCSAFLUSH, &g_tty_saved);
        ssize_t n = write(g_tty_fd, "\n", 1);
        (void)n;
    }
    if (g_tmp_path)
        unlink(g_tmp_path);
    parts_unlink();
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(EXIT_INTERRUPTED);
}

static void *signal_thread(void *arg)
{
    const sigset_t *set = arg;
    int repeat = 0;
    for (;;) {
        int sig;
        if (repeat) {
            struct timespec ts = {0, CANCEL_REPEAT_MS * 1000000L};
            sig = sigtimedwait(set, NULL, &ts); /* -1 on timeout */
        } else if (sigwait(set, &sig) != 0) {
            sig = -1;
        }
        pthread_mutex_lock(&g_lock);
        if (sig > 0 && (g_interrupted || g_phase == PH_CONNECT))
            exit_interrupted_now();
        repeat = 0;
        if (sig > 0) {
            g_interrupted = 1;
            if (g_phase == PH_STREAM)
                pgspout_stream_cancel(g_stream);
            if (g_phase == PH_PARTS)
                parts_cancel();
        }
        if (g_interrupted && g_phase == PH_QUERY) {
            pgspout_conn_cancel(g_conn);
            repeat = 1;
        }
        pthread_mutex_unlock(&g_lock);
    }
    return NULL;
}

/* Move to phase ph (with the handle it cancels); returns 1 if a signal came
 * in already, after cancelling stream s if one is given. */
static int enter_phase(int ph, pgspout_conn *conn, pgspout_stream *s)
{
    pthread_mutex_lock(&g_lock);
    g_phase = ph;
    g_conn = conn;
    g_stream = s;
    int interrupted = g_interrupted;
    if (interrupted && s)
        pgspout_stream_cancel(s);
    pthread_mutex_unlock(&g_lock);
    return interrupted;
}

static int interrupted(void)
{
    pthread_mutex_lock(&g_lock);
    int i = g_interrupted;
    pthread_mutex_unlock(&g_lock);
    return i;
}

/* ----------------------------------------------------------- progress */
static int g_tty;

/* One status line on stderr, for every format. The bar, the percentage and
 * the ETA appear only when the total is known (expected_rows). Two byte
 * counts, each named: the value bytes received from the server
 * (pgspout_stats.bytes_received, with their rate) and the bytes written to
 * the output, which quoting, separators and JSON keys make larger. The hook
 * runs on the main thread (the one writing), so out_bytes_written is
 * current. */
static int g_fmt; /* the output format, for the progress line */
static void progress(const pgspout_stats *st, void *ud)
{
    (void)ud;
    /* the last call comes as the stream ends, before the JSON array's
     * closing bracket is written: count it for a stream that ended well */
    int ended_well = st->state == PGSPOUT_STATE_DONE || st->state == PGSPOUT_STATE_LIMITED;
    unsigned long long out_bytes = out_bytes_written + (ended_well ? out_footer_size(g_fmt) : 0);
    char bytes[32], rate[32], written[32], head[48] = "", eta[32] = "";
    out_human_bytes(bytes, sizeof bytes, (double)st->bytes_received);
    out_human_bytes(rate, sizeof rate, st->bytes_per_sec);
    out_human_bytes(written, sizeof written, (double)out_bytes);
    int ended = st->state >= PGSPOUT_STATE_DONE;
    if (st->progress >= 0) {
        int w = 20, fill = (int)(st->progress * w + 0.5);
        head[0] = '[';
        for (int i = 0; i < w; i++)
            head[1 + i] = i < fill ? '#' : '.';
        snprintf(head + w + 1, sizeof head - (size_t)w - 1, "] %3.0f%%  ", st->progress * 100);
        if (st->eta >= 0 && !ended)
            snprintf(eta, sizeof eta, "  ETA %.0fs", st->eta);
    }
    fprintf(stderr,
            "%s%s%llu rows  %.0f rows/s  %s of values received (%s/s)  %s written  %.1fs%s%s",
            g_tty ? "\r" : "", head, (unsigned long long)st->rows_delivered, st->rows_per_sec,
            bytes, rate, written, st->elapsed, eta, g_tty ? "\033[K" : "\n");
    if (ended && g_tty)
        fputc('\n', stderr);
}

/* The planner's row estimate for sql, or -1. */
static long long estimate_rows(pgspout_conn *conn, const char *sql, int nparams,
                               const char *const *params)
{
    size_t n = strlen(sql) + 32;
    char *explain = malloc(n);
    if (explain == NULL)
        return -1;
    snprintf(explain, n, "EXPLAIN (FORMAT JSON) %s", sql);
    pgspout_stream *s = NULL;
    long long est = -1;
    if (pgspout_stream_open(conn, explain, nparams, params, NULL, &s) == PGSPOUT_OK) {
        const pgspout_row *r;
        if (pgspout_stream_next(s, &r) == PGSPOUT_OK) {
            const char *v = pgspout_row_value(r, 0, NULL);
            const char *p = v ? strstr(v, "\"Plan Rows\":") : NULL;
            if (p)
                est = strtoll(p + 12, NULL, 10);
        }
    }
    pgspout_stream_close(s);
    free(explain);
    return est;
}

/* ------------------------------------------------------------- output
 * The rows go to g_out: stdout, or with -o FILE a temporary file in FILE's
 * directory (".FILE.pgspout-XXXXXX"), fsync'd and renamed over FILE only
 * when the stream ended well, so FILE is either the whole result or left as
 * it was. A FILE that exists and is not a regular file (a FIFO, a device)
 * cannot be replaced atomically and is written directly.
 *
 * The output is fully buffered (1 MiB) for throughput on fast streams, and
 * flushed whenever the stream would wait for the server, so slow streams
 * reach a pipe row by row. */
static char g_outbuf[1 << 20];
static FILE *g_out;
static const char *g_target; /* -o FILE, or NULL for stdout */
static int g_target_existed; /* and it was there before: left as it was */

/* Remove the temporary file (a stream that did not end well). */
static void discard_output(const char *why)
{
    pthread_mutex_lock(&g_lock);
    char *tmp = g_tmp_path;
    g_tmp_path = NULL;
    if (tmp)
        unlink(tmp);
    pthread_mutex_unlock(&g_lock);
    if (tmp) {
        fprintf(stderr, "pgspout: %s %s (%s%s)\n", g_target,
                g_target_existed ? "left as it was" : "not written", why,
                out_bytes_written ? "; the partial output was removed" : "");
        free(tmp);
    }
}

/* Open the output for -o path (NULL or "-": stdout). 0, or an exit status
 * after a message. */
static int open_output(const char *path)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        g_out = stdout;
        return 0;
    }
    /* a symbolic link: replace the file it points to, not the link */
    static char *resolved;
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && (resolved = realpath(path, NULL)))
        path = resolved;
    g_target = path;
    int exists = stat(path, &st) == 0;
    g_target_existed = exists;
    if (exists && !S_ISREG(st.st_mode)) {
        if ((g_out = fopen(path, "w")) == NULL) {
            fprintf(stderr, "pgspout: cannot open %s: %s\n", path, strerror(errno));
            return EXIT_QUERY;
        }
        return 0;
    }
    char *d = strdup(path), *b = strdup(path);
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (d == NULL || b == NULL || tmp == NULL) {
        free(d), free(b), free(tmp);
        fprintf(stderr, "pgspout: out of memory\n");
        return EXIT_QUERY;
    }
    snprintf(tmp, n, "%s/.%s.pgspout-XXXXXX", dirname(d), basename(b));
    free(d), free(b);
    mode_t mask = umask(0);
    umask(mask);
    pthread_mutex_lock(&g_lock); /* a signal now removes what mkstemp made */
    int fd = mkstemp(tmp);
    int err = errno;
    if (fd >= 0) {
        g_tmp_path = tmp;
        fchmod(fd, exists ? st.st_mode & 07777 : 0666 & ~mask);
    }
    pthread_mutex_unlock(&g_lock);
    if (fd < 0) {
        fprintf(stderr, "pgspout: cannot create a temporary file beside %s: %s\n", path,
                strerror(err));
        free(tmp);
        return EXIT_QUERY;
    }
    if ((g_out = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "pgspout: %s: %s\n", tmp, strerror(errno));
        close(fd);
        discard_output("cannot write it");
        return EXIT_QUERY;
    }
    return 0;
}

/* Close the output. With a temporary file: fsync it and rename it over the
 * target when ok, else remove it. 0, or EXIT_QUERY after a message. */
static int close_output(int ok, const char *why)
{
    if (g_out == NULL || g_out == stdout)
        return 0;
    int err = 0;
    const char *step = "";
    if (ok && fflush(g_out) != 0)
        err = errno, step = "writing";
    pthread_mutex_lock(&g_lock);
    int atomic = g_tmp_path != NULL;
    pthread_mutex_unlock(&g_lock);
    if (ok && !err && atomic && fsync(fileno(g_out)) != 0)
        err = errno, step = "syncing";
    if (fclose(g_out) != 0 && ok && !err)
        err = errno, step = "closing";
    g_out = NULL;
    if (!atomic) {
        if (err) {
            fprintf(stderr, "pgspout: %s %s: %s\n", step, g_target, strerror(err));
            return EXIT_QUERY;
        }
        return 0;
    }
    if (!ok || err) {
        if (err)
            fprintf(stderr, "pgspout: %s %s: %s\n", step, g_target, strerror(err));
        discard_output(err ? "the output could not be written" : why);
        return EXIT_QUERY;
    }
    pthread_mutex_lock(&g_lock);
    char *tmp = g_tmp_path;
    if (rename(tmp, g_target) != 0) {
        err = errno;
        pthread_mutex_unlock(&g_lock);
        fprintf(stderr, "pgspout: renaming %s to %s: %s\n", tmp, g_target, strerror(err));
        discard_output("the rename failed");
        return EXIT_QUERY;
    }
    g_tmp_path = NULL;
    pthread_mutex_unlock(&g_lock);
    free(tmp);
    /* make the rename itself durable */
    char *d = strdup(g_target);
    int dfd = d ? open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(d);
    return 0;
}

/* After a failed write to the output: EPIPE (the reader went away) stops
 * quietly; anything else is reported. Returns the exit status to use. */
static int output_failed(int err)
{
    if (err == EPIPE)
        return 0;
    fprintf(stderr, "pgspout: writing output: %s\n", strerror(err));
    return EXIT_QUERY;
}

/* Write every row of s to g_out. Returns 0 with the stream's last code in
 * *rc (PGSPOUT_DONE, or the error that ended it), or the exit status of a
 * failed write with *write_err set. */
static int stream_rows(pgspout_stream *s, int fmt, int header, int *rc, int *write_err)
{
    if (out_header(g_out, fmt, header, s) != 0) {
        *write_err = 1;
        return output_failed(errno);
    }
    for (;;) {
        const pgspout_chunk *c;
        int r = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &c);
        if (r == PGSPOUT_AGAIN || r == PGSPOUT_PAUSED) {
            /* nothing to write until the server sends more: hand over what
             * is buffered now, then wait */
            if (fflush(g_out) != 0) {
                *write_err = 1;
                return output_failed(errno);
            }
            r = pgspout_stream_next_chunk(s, 0, &c);
        }
        if (r == PGSPOUT_DONE && out_footer(g_out, fmt) != 0) {
            *write_err = 1;
            return output_failed(errno);
        }
        if (r != PGSPOUT_OK) {
            *rc = r;
            return 0;
        }
        int w = out_chunk(g_out, fmt, s, c, rc);
        if (w == OUT_ELIB)
            return 0;
        if (w != 0) {
            *write_err = 1;
            return output_failed(errno);
        }
    }
}

/* ---------------------------------------------------------- connection
 * The connection string is built the way psql hands its options to libpq
 * (PQconnectdbParams with expand_dbname): $PGSPOUT_DSN first, then -h, -p,
 * -U and the password, then the database name, which, when it is a
 * connection string or URI (contains "=" or starts with postgresql:// or
 * postgres://), is expanded in place so that its keys override the ones
 * before it, as in psql. Keys left unset come from the PG* variables,
 * services and .pgpass through libpq. */
typedef struct strbuf {
    char *p;
    size_t len, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Append " key='value'" (quotes and backslashes escaped). */
static int sb_kv(strbuf *b, const char *key, const char *val)
{
    int rc = sb_add(b, " ", 1) | sb_add(b, key, strlen(key)) | sb_add(b, "='", 2);
    for (const char *p = val; *p; p++) {
        if (*p == '\'' || *p == '\\')
            rc |= sb_add(b, "\\", 1);
        rc |= sb_add(b, p, 1);
    }
    return rc | sb_add(b, "'", 1);
}

/* Whether libpq would take s as a connection string rather than a name. */
static int is_conninfo(const char *s)
{
    return strchr(s, '=') != NULL || strncmp(s, "postgresql://", 13) == 0 ||
           strncmp(s, "postgres://", 11) == 0;
}

/* Append the keys that the connection string cs sets. 0, or -1 with libpq's
 * reason in *err (PQfreemem it). */
static int sb_conninfo(strbuf *b, const char *cs, char **err)
{
    PQconninfoOption *o = PQconninfoParse(cs, err);
    if (o == NULL)
        return -1;
    int rc = 0;
    for (PQconninfoOption *i = o; i->keyword; i++)
        if (i->val)
            rc |= sb_kv(b, i->keyword, i->val);
    PQconninfoFree(o);
    return rc;
}

typedef struct connargs {
    const char *base; /* $PGSPOUT_DSN */
    const char *host, *port, *user, *dbname;
    char *password; /* from the prompt */
} connargs;

/* The connection string for a, or NULL after a message. */
static char *build_conninfo(const connargs *a)
{
    strbuf b = {0};
    char *err = NULL;
    int rc = sb_kv(&b, "fallback_application_name", "pgspout");
    if (a->base && *a->base && sb_conninfo(&b, a->base, &err) != 0) {
        if (err == NULL)
            goto oom;
        fprintf(stderr, "pgspout: $PGSPOUT_DSN is not a valid connection string: %s", err);
        goto fail;
    }
    if (a->host)
        rc |= sb_kv(&b, "host", a->host);
    if (a->port)
        rc |= sb_kv(&b, "port", a->port);
    if (a->user)
        rc |= sb_kv(&b, "user", a->user);
    if (a->password)
        rc |= sb_kv(&b, "password", a->password);
    if (a->dbname && is_conninfo(a->dbname)) {
        if (sb_conninfo(&b, a->dbname, &err) != 0) {
            if (err == NULL)
                goto oom;
            fprintf(stderr, "pgspout: \"%s\" is not a valid connection string: %s", a->dbname, err);
            goto fail;
        }
    } else if (a->dbname) {
        rc |= sb_kv(&b, "dbname", a->dbname);
    }
    if (rc == 0 && b.p != NULL)
        return b.p;
oom:
    fprintf(stderr, "pgspout: out of memory\n");
fail:
    if (err)
        PQfreemem(err);
    free(b.p);
    return NULL;
}

/* The user name to show in the password prompt, when we know it. */
static const char *prompt_user(const connargs *a)
{
    static char user[128];
    if (a->dbname && is_conninfo(a->dbname)) {
        PQconninfoOption *o = PQconninfoParse(a->dbname, NULL);
        for (PQconninfoOption *i = o; o && i->keyword; i++)
            if (strcmp(i->keyword, "user") == 0 && i->val)
                snprintf(user, sizeof user, "%s", i->val);
        PQconninfoFree(o);
        if (user[0])
            return user;
    }
    return a->user ? a->user : getenv("PGUSER");
}

/* Read a password from the terminal (/dev/tty, as psql), echo off. The
 * signal thread restores the echo if SIGINT comes meanwhile. NULL without a
 * terminal. */
static char *prompt_password(const char *user)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct termios t;
    int have = tcgetattr(fd, &t) == 0;
    if (have) {
        pthread_mutex_lock(&g_lock);
        g_tty_saved = t;
        g_tty_fd = fd;
        pthread_mutex_unlock(&g_lock);
        struct termios noecho = t;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fd, TCSAFLUSH, &noecho);
    }
    char prompt[200];
    int pn = user && *user ? snprintf(prompt, sizeof prompt, "Password for user %s: ", user)
                           : snprintf(prompt, sizeof prompt, "Password: ");
    ssize_t w = write(fd, prompt, (size_t)pn < sizeof prompt ? (size_t)pn : sizeof prompt - 1);
    (void)w;
    char buf[1024];
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || ch == '\n' || ch == '\r')
            break;
        if (n + 1 < sizeof buf)
            buf[n++] = ch;
    }
    buf[n] = '\0';
    if (have) {
        pthread_mutex_lock(&g_lock);
        tcsetattr(fd, TCSAFLUSH, &t);
        g_tty_fd = -1;
        pthread_mutex_unlock(&g_lock);
    }
    w = write(fd, "\n", 1);
    close(fd);
    char *p = strdup(buf);
    memset(buf, 0, sizeof buf);
    return p;
}

/* -------------------------------------------------------------- input */
/* All of f (the query), or NULL with errno set. */
static char *read_all(FILE *f)
{
    strbuf b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (sb_add(&b, buf, n) != 0) {
            free(b.p);
            errno = ENOMEM;
            return NULL;
        }
    if (ferror(f)) {
        int e = errno;
        free(b.p);
        errno = e ? e : EIO;
        return NULL;
    }
    return b.p ? b.p : strdup("");
}

/* Whether a bare argument (taken for DBNAME or USERNAME) is more likely SQL
 * or a leftover parameter: spaces, ';' or '(' in something that is not a
 * valid connection string. */
static int looks_like_sql(const char *arg)
{
    if (is_conninfo(arg)) {
        PQconninfoOption *o = PQconninfoParse(arg, NULL);
        int valid = o != NULL;
        PQconninfoFree(o);
        if (valid)
            return 0;
    }
    return strpbrk(arg, " \t\n\r;(") != NULL;
}

/* -------------------------------------------------------------- errors */
/* The line for every failure the library reports, the same shape as the
 * Lua binding's errors: "pgspout: <code name>: <message> (SQLSTATE xxxxx)".
 * The SQLSTATE is the server's or the one pgspout sets (53200 max_memory,
 * 57014 a cancel, 08006 a lost connection), added when the message does not
 * carry it already (server errors do); the message is the object's own
 * (libpq's trailing newline trimmed), or the code's static text when it has
 * none. */
static void report(int code, const char *msg, const char *sqlstate)
{
    if (msg == NULL || *msg == '\0')
        msg = pgspout_strerror(code);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    fprintf(stderr, "pgspout: %s: %.*s", pgspout_code_name(code), (int)n, msg);
    if (sqlstate && *sqlstate && !strstr(msg, sqlstate))
        fprintf(stderr, " (SQLSTATE %s)", sqlstate);
    fputc('\n', stderr);
}

/* Options that mean nothing to this command: accepting them would ignore
 * them. */
static const char *unusable_option(const char *key)
{
    if (strcmp(key, "rows") == 0)
        return "shapes rows in the Python/Lua bindings; use --format here";
    if (strcmp(key, "idle_timeout") == 0)
        return "applies to registry streams only";
    if (strcmp(key, "binary") == 0 || strcmp(key, "arrow") == 0)
        return "hands values over in binary, for programs; this command writes text";
    if (strcmp(key, "json") == 0)
        return "follows --format: ndjson and json look the columns' types up, csv and tsv "
               "need not";
    return NULL;
}

/* The name to quote for a key only the progress line uses (static storage:
 * key itself may be freed), or NULL. */
static const char *progress_only(int ch, const char *key)
{
    static const char *const keys[] = {"expected_rows", "progress_rows", "progress_interval"};
    if (ch == OPT_EXPECTED)
        return "--expected-rows";
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0)
            return keys[i];
    return NULL;
}

/* Whether an -o value is KEY=VALUE with a KEY pgspout knows: the old -o
 * KEY=VALUE, now --option, which would otherwise name a file. */
static int is_option_setting(const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || strchr(arg, '/') != NULL)
        return 0;
    char key[64];
    size_t n = (size_t)(eq - arg);
    if (n >= sizeof key)
        return 0;
    memcpy(key, arg, n);
    key[n] = '\0';
    pgspout_options *probe = pgspout_options_new();
    int known = probe && pgspout_options_set(probe, key, eq + 1) != PGSPOUT_EOPTION;
    pgspout_options_free(probe);
    return known || unusable_option(key) != NULL;
}

/* -------------------------------------------------------------- main */
int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"username", required_argument, NULL, 'U'},
        {"dbname", required_argument, NULL, 'd'},
        {"no-password", no_argument, NULL, 'w'},
        {"password", no_argument, NULL, 'W'},
        {"command", required_argument, NULL, 'c'},
        {"file", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'},
        {"format", required_argument, NULL, 'F'},
        {"param", required_argument, NULL, OPT_PARAM},
        {"null-param", required_argument, NULL, OPT_NULL_PARAM},
        {"no-header", no_argument, NULL, OPT_NO_HEADER},
        {"chunk-rows", required_argument, NULL, OPT_CHUNK_ROWS},
        {"max-rows", required_argument, NULL, OPT_MAX_ROWS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"option", required_argument, NULL, OPT_OPTION},
        {"progress", no_argument, NULL, OPT_PROGRESS},
        {"expected-rows", required_argument, NULL, OPT_EXPECTED},
        {"metrics", required_argument, NULL, OPT_METRICS},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, 'V'},
        /* psql's and the old pgspout's spellings, refused with the way */
        {"set", required_argument, NULL, OPT_VARIABLE},
        {"variable", required_argument, NULL, OPT_VARIABLE},
        {"dsn", required_argument, NULL, OPT_DSN},
        {"partitions", required_argument, NULL, OPT_PARTITIONS},
        {"table", required_argument, NULL, OPT_TABLE},
        {"column", required_argument, NULL, OPT_COLUMN},
        {"where", required_argument, NULL, OPT_WHERE},
        {"key", required_argument, NULL, OPT_KEY},
        {"bound", required_argument, NULL, OPT_BOUND},
        {NULL, 0, NULL, 0}};
    connargs ca = {.base = getenv("PGSPOUT_DSN")};
    const char *command = NULL, *file = NULL, *output = NULL, *metrics_file = NULL;
    const char *null_param = NULL, *progress_key = NULL, *bare = NULL;
    int fmt = FMT_NDJSON, header = 1, want_progress = 0, expected_given = 0, interval_given = 0;
    int prompt = -1; /* -w 0, -W 1, else only when the server asks */
    int exit_code = 0, ch, rc = PGSPOUT_OK, write_err = 0, connecting = 0, nparams = 0;
    static sigset_t set;
    pthread_t sig_tid;
    pgspout_conn *conn = NULL;
    pgspout_stream *s = NULL;
    char *sql = NULL, *conninfo = NULL;
    const char **params = calloc((size_t)argc + 1, sizeof *params);
    /* --partitions: the plan's spec (columns and bounds point into argv) */
    const char **columns = calloc((size_t)argc + 1, sizeof *columns);
    const char **bounds = calloc((size_t)argc + 1, sizeof *bounds);
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    long partitions = 0;
    pgspout_options *opts = pgspout_options_new();
    if (opts == NULL || params == NULL || columns == NULL || bounds == NULL) {
        fprintf(stderr, "pgspout: out of memory\n");
        exit_code = EXIT_QUERY;
        goto done;
    }
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h:p:U:d:wWc:f:o:F:v:V?", longopts, NULL)) != -1) {
        const char *key = NULL, *val = optarg, *arg = argv[optind - 1];
        char *kv = NULL;
        switch (ch) {
        case 'h': ca.host = optarg; continue;
        case 'p':
            if (optarg[0] == '\0' || strspn(optarg, "0123456789,") != strlen(optarg)) {
                exit_code = usage_error("-p is the port, \"%s\" is not a port number (the "
                                        "progress line is --progress)",
                                        optarg);
                goto done;
            }
            ca.port = optarg;
            continue;
        case 'U': ca.user = optarg; continue;
        case 'd': ca.dbname = optarg; continue;
        case 'w': prompt = 0; continue;
        case 'W': prompt = 1; continue;
        case 'c':
        case 'f':
            if (command || file) {
                exit_code = usage_error("one query per run: give -c SQL or -f FILE once");
                goto done;
            }
            *(ch == 'c' ? &command : &file) = optarg;
            continue;
        case 'o':
            if (is_option_setting(optarg)) {
                exit_code = usage_error("-o is the output file, and \"%s\" sets a pgspout "
                                        "option: give it with --option %s (or -o ./%s for a "
                                        "file of that name)",
                                        optarg, optarg, optarg);
                goto done;
            }
            output = optarg;
            continue;
        case 'F':
            if ((fmt = out_format(optarg)) < 0) {
                exit_code = usage_error("unknown format \"%s\" (ndjson, csv, tsv or json; -F is "
                                        "pg_dump's --format, not psql's field separator)",
                                        optarg);
                goto done;
            }
            continue;
        case OPT_PARAM: params[nparams++] = optarg; continue;
        case OPT_NULL_PARAM: null_param = optarg; continue;
        case OPT_NO_HEADER: header = 0; continue;
        case OPT_CHUNK_ROWS: key = "chunk_rows"; break;
        case OPT_MAX_ROWS: key = "max_rows"; break;
        case OPT_TIMEOUT: key = "timeout"; break;
        case OPT_EXPECTED: key = "expected_rows"; break;
        case OPT_OPTION: {
            if ((kv = strdup(optarg)) == NULL) {
                fprintf(stderr, "pgspout: out of memory\n");
                exit_code = EXIT_QUERY;
                goto done;
            }
            char *eq = strchr(kv, '=');
            if (eq == NULL) {
                exit_code = usage_error("--option wants KEY=VALUE, got \"%s\"", optarg);
                free(kv);
                goto done;
            }
            *eq = '\0';
            key = kv, val = eq + 1;
            const char *why = unusable_option(key);
            if (why) {
                fprintf(stderr, "pgspout: option %s %s\n", key, why);
                free(kv);
                exit_code = EXIT_USAGE;
                goto done;
            }
            break;
        }
        case OPT_PARTITIONS: {
            char *end;
            errno = 0;
            partitions = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || partitions < 1 || partitions > 10000) {
                exit_code =
                    usage_error("--partitions wants a number from 1 to 10000, not \"%s\"", optarg);
                goto done;
            }
            continue;
        }
        case OPT_TABLE: spec.table = optarg; continue;
        case OPT_COLUMN: columns[spec.ncolumns++] = optarg; continue;
        case OPT_WHERE: spec.where = optarg; continue;
        case OPT_KEY: spec.key = optarg; continue;
        case OPT_BOUND: bounds[spec.nbounds++] = optarg; continue;
        case OPT_PROGRESS: want_progress = 1; continue;
        case OPT_METRICS: metrics_file = optarg; continue;
        case 'v':
        case OPT_VARIABLE:
            exit_code = usage_error("%s: pgspout has no psql variables: give query parameters "
                                    "with --param VALUE ($1, $2, ... in order) and pgspout's "
                                    "options with --option KEY=VALUE",
                                    ch == 'v' ? "-v" : "--set/--variable");
            goto done;
        case OPT_DSN:
            exit_code = usage_error("--dsn is gone: give the connection string or URI with -d "
                                    "(--dbname), as to psql");
            goto done;
        case 'V':
            printf("pgspout %s (transport %s)\n", pgspout_version(), pgspout_transport());
            goto done;
        case OPT_HELP: usage(stdout); goto done;
        case ':': exit_code = usage_error("option %s needs a value", arg); goto done;
        default: /* '?': -? itself, or an unknown option */
            if (strcmp(arg, "-?") == 0) {
                usage(stdout);
                goto done;
            }
            if (optopt)
                exit_code = usage_error("invalid option -- '%c'", optopt);
            else
                exit_code = usage_error("unrecognized option \"%s\"", arg);
            goto done;
        }
        int orc = pgspout_options_set(opts, key, val);
        if (orc != PGSPOUT_OK) {
            report(orc, pgspout_options_error(opts), NULL);
            free(kv);
            exit_code = EXIT_USAGE;
            goto done;
        }
        const char *only = progress_only(ch, key);
        if (only) {
            progress_key = only;
            expected_given |= strcmp(key, "expected_rows") == 0;
            interval_given |= strcmp(key, "expected_rows") != 0;
        }
        free(kv);
    }
    /* [DBNAME [USERNAME]] as psql takes them: the first fills -d when it is
     * not given, the next -U; SQL or a parameter is never guessed from a
     * bare argument */
    for (int i = optind; i < argc; i++) {
        const char *a = argv[i];
        if (looks_like_sql(a)) {
            exit_code = usage_error("\"%s\" looks like SQL, not a database or user name: use -c "
                                    "SQL or -f FILE (and --param VALUE for $1, $2, ...)",
                                    a);
            goto done;
        }
        if (ca.dbname == NULL)
            ca.dbname = a;
        else if (ca.user == NULL)
            ca.user = a;
        else {
            exit_code = usage_error("too many arguments: \"%s\" (pgspout takes [DBNAME "
                                    "[USERNAME]]; the query goes with -c SQL or -f FILE, its "
                                    "parameters with --param VALUE)",
                                    a);
            goto done;
        }
        bare = a;
    }
    if (progress_key && !want_progress) {
        /* only the progress line uses them */
        fprintf(stderr, "pgspout: %s needs --progress\n", progress_key);
        exit_code = EXIT_USAGE;
        goto done;
    }
    for (int i = 0; i < nparams; i++)
        if (null_param && strcmp(params[i], null_param) == 0)
            params[i] = NULL;

    /* --partitions N --table T: the query is the plan's */
    if (partitions || spec.table || spec.ncolumns || spec.where || spec.key || spec.nbounds) {
        const char *why = NULL;
        if (!partitions || !spec.table)
            why = partitions ? "--partitions needs --table TABLE"
                             : "--table, --column, --where, --key and --bound go with "
                               "--partitions N";
        else if (command || file)
            why = "--table reads the table: -c and -f do not go with it (use --where and "
                  "--column)";
        else if (spec.nbounds && !spec.key)
            why = "--bound needs --key COLUMN";
        else if (spec.nbounds && spec.nbounds + 1 != partitions)
            why = "N-1 --bound values cut --key into --partitions N ranges";
        else if (parts_output_ok(output, &why) == 0)
            why = NULL;
        if (why) {
            exit_code = usage_error("%s", why);
            goto done;
        }
        spec.npartitions = (int)partitions;
        spec.columns = columns;
        spec.bounds = bounds;
        spec.nparams = nparams;
        spec.params = params;
        sql = strdup("");
    } else if (command) {
        sql = strdup(command);
    } else {
        FILE *in = stdin;
        if (file && strcmp(file, "-") != 0 && (in = fopen(file, "r")) == NULL) {
            exit_code = usage_error("cannot read the query from %s: %s%s", file, strerror(errno),
                                    out_format(file) >= 0 ? " (the output format is -F)" : "");
            goto done;
        }
        if (file == NULL && isatty(STDIN_FILENO))
            fprintf(stderr, "pgspout: reading the query from the terminal, end it with Ctrl-D "
                            "(or give -c SQL or -f FILE)\n");
        sql = read_all(in);
        int err = errno;
        if (in != stdin)
            fclose(in);
        if (sql == NULL) {
            fprintf(stderr, "pgspout: reading the query from %s: %s\n",
                    file && strcmp(file, "-") != 0 ? file : "stdin", strerror(err));
            exit_code = EXIT_USAGE;
            goto done;
        }
    }
    if (sql == NULL) {
        fprintf(stderr, "pgspout: out of memory\n");
        exit_code = EXIT_QUERY;
        goto done;
    }
    if (!partitions && sql[strspn(sql, " \t\r\n")] == '\0') {
        exit_code = usage_error("no query: give -c SQL, -f FILE or the query on stdin");
        goto done;
    }
    /* an old-style call, pgspout -c "... $1" VALUE, would take VALUE for the
     * database name */
    if (bare && nparams == 0 && strstr(sql, "$1")) {
        exit_code = usage_error("the query uses $1 but no --param is given, and \"%s\" would "
                                "be taken as a database or user name: give parameters with "
                                "--param VALUE",
                                bare);
        goto done;
    }

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (pthread_create(&sig_tid, NULL, signal_thread, &set) != 0) {
        fprintf(stderr, "pgspout: cannot start the signal thread\n");
        exit_code = EXIT_QUERY;
        goto done;
    }
    signal(SIGPIPE, SIG_IGN);
    if (prompt == 1 && (ca.password = prompt_password(prompt_user(&ca))) == NULL) {
        exit_code = usage_error("-W: no terminal (/dev/tty) to read the password from");
        goto done;
    }
    if (!partitions) {
        if ((exit_code = open_output(output)) != 0)
            goto done;
        setvbuf(g_out, g_outbuf, _IOFBF, sizeof g_outbuf);
    }

    /* connection keys (--option connect_timeout=5s, application_name=...)
     * apply here; the stream keys of opts are for pgspout_stream_open */
    connecting = 1;
    for (;;) {
        if ((conninfo = build_conninfo(&ca)) == NULL) {
            exit_code = EXIT_CONNECT;
            goto done;
        }
        rc = pgspout_connect_opts(conninfo, opts, &conn);
        if (rc == PGSPOUT_OK)
            break;
        const char *why = conn ? pgspout_conn_error(conn) : NULL;
        /* as psql: the server wants a password and none was given */
        if (prompt == -1 && ca.password == NULL && why && strstr(why, "no password supplied") &&
            (ca.password = prompt_password(prompt_user(&ca))) != NULL) {
            pgspout_conn_close(conn);
            conn = NULL;
            free(conninfo);
            continue;
        }
        report(rc, why, NULL);
        exit_code = rc == PGSPOUT_ECONNECT ? EXIT_CONNECT : EXIT_QUERY;
        goto done;
    }
    if (enter_phase(PH_QUERY, conn, NULL))
        goto done;
    if (want_progress) {
        g_tty = isatty(STDERR_FILENO);
        g_fmt = fmt;
        if (!interval_given)
            pgspout_options_set(opts, "progress_interval", g_tty ? "200ms" : "1s");
    }
    /* JSON rows as row_to_json renders them: composites, domains, enums...
     * need their types looked up before the statement runs */
    if (fmt == FMT_NDJSON || fmt == FMT_JSON)
        pgspout_options_set(opts, "json", "on");
    if (partitions) {
        /* --progress: one line for all the partitions, printed by parts_run */
        parts_args pa = {conninfo, opts,   conn,          spec,  output,
                         fmt,      header, want_progress, g_tty, estimate_rows};
        if (enter_phase(PH_PARTS, conn, NULL))
            goto done;
        exit_code = parts_run(&pa, report);
        rc = exit_code ? PGSPOUT_EINTERNAL : PGSPOUT_DONE;
        goto done;
    }
    if (want_progress) {
        pgspout_options_set_progress(opts, progress, NULL);
        if (!expected_given) {
            long long est = estimate_rows(conn, sql, nparams, params);
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", est);
            if (est > 0)
                pgspout_options_set(opts, "expected_rows", buf);
        }
    }

    /* a signal during the estimate leaves it cancelled: the query never runs */
    if (enter_phase(PH_QUERY, conn, NULL))
        goto done;
    rc = pgspout_stream_open(conn, sql, nparams, params, opts, &s);
    if (enter_phase(PH_STREAM, conn, s))
        rc = rc == PGSPOUT_OK ? PGSPOUT_ECANCELLED : rc;
    if (rc == PGSPOUT_OK)
        exit_code = stream_rows(s, fmt, header, &rc, &write_err);
    /* a failed output has nothing more to take: flush only a good one */
    if (!write_err && fflush(g_out) != 0)
        exit_code = output_failed(errno), write_err = 1;
    if (rc < 0 && !write_err) {
        exit_code = rc == PGSPOUT_ECONN                            ? EXIT_CONNECT
                    : rc == PGSPOUT_EVALUE || rc == PGSPOUT_EINVAL ? EXIT_USAGE
                                                                   : EXIT_QUERY;
        if (!interrupted())
            report(rc, s ? pgspout_stream_error(s) : pgspout_conn_error(conn),
                   s ? pgspout_stream_sqlstate(s) : NULL);
    }

done:
    enter_phase(PH_END, NULL, NULL);
    pgspout_stream_close(s);
    pgspout_conn_close(conn);
    if (g_out) {
        int ok = exit_code == 0 && !write_err && rc == PGSPOUT_DONE && !interrupted();
        int st = close_output(ok, interrupted() ? "interrupted" : "the stream did not complete");
        if (st && !exit_code)
            exit_code = st;
    }
    if (metrics_file && connecting) {
        char *text = pgspout_metrics_prometheus();
        FILE *f = text ? fopen(metrics_file, "w") : NULL;
        int ok = f != NULL && fputs(text, f) >= 0;
        if ((f && fclose(f) != 0) || !ok) {
            fprintf(stderr, "pgspout: writing metrics to %s failed\n", metrics_file);
            exit_code = exit_code ? exit_code : EXIT_QUERY;
        }
        pgspout_free(text);
    }
    if (ca.password) {
        memset(ca.password, 0, strlen(ca.password));
        free(ca.password);
    }
    free(conninfo);
    free(sql);
    free(params);
    free(columns);
    free(bounds);
    pgspout_options_free(opts);
    if (interrupted()) {
        fputs("pgspout: interrupted\n", stderr);
        exit_code = EXIT_INTERRUPTED;
    }
    return exit_code;
}
