/* pgspout - stream a query's rows to stdout as NDJSON, CSV or TSV.
 *
 *   pgspout [--dsn DSN] [--format ndjson|csv|tsv] [--chunk-rows N] [--progress]
 *           [--expected-rows N] [--metrics FILE] [-o KEY=VALUE]... "SQL" [PARAM...]
 *
 * Exit status: 0 success, 1 query/stream error, 2 usage error, 3 connection
 * error, 130 interrupted (SIGINT/SIGTERM cancel the server query first).
 */
#include "output.h"

#include <pgspout.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_QUERY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3, EXIT_INTERRUPTED = 130 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: pgspout [options] \"SQL\" [PARAM...]\n"
            "Stream the rows of SQL (parameters $1.. from PARAM, sent separately) to stdout.\n\n"
            "  -d, --dsn DSN          libpq conninfo or URI (default: $PGSPOUT_DSN, then PG* "
            "variables)\n"
            "  -f, --format FMT       ndjson (default), csv or tsv\n"
            "      --no-header        no column-name line for csv/tsv\n"
            "  -c, --chunk-rows N     rows per chunk (option chunk_rows)\n"
            "  -n, --max-rows N       stop after N rows (option max_rows)\n"
            "  -t, --timeout DUR      whole-stream deadline, e.g. 30s (option timeout)\n"
            "  -o, --option KEY=VAL   a stream option (max_memory=64MB, label=x, ...) or a\n"
            "                         connection option (connect_timeout=5s, keepalives_idle,\n"
            "                         keepalives_interval, keepalives_count, tcp_user_timeout,\n"
            "                         application_name)\n"
            "  -p, --progress         live progress on stderr (rows, rows/s, bytes of values\n"
            "                         received from the server, ETA when the total is known)\n"
            "  -e, --expected-rows N  total rows for the progress ETA (default: planner estimate)\n"
            "  -m, --metrics FILE     write Prometheus metrics text to FILE at the end\n"
            "      --null-param TEXT  a PARAM equal to TEXT is sent as SQL NULL\n"
            "  -h, --help             this text\n"
            "  -V, --version          print the version\n"
            "Rows are written as they arrive: output is flushed whenever the next rows are\n"
            "not there yet. Exit: 0 ok, 1 query error, 2 usage, 3 connection, 130 interrupted\n"
            "(SIGINT or SIGTERM: the server query is cancelled first).\n");
}

/* ------------------------------------------------------------ signals
 * SIGINT and SIGTERM are blocked in every thread but signal_thread, which
 * turns them into a cancel of whatever the main thread is waiting for. What
 * there is to cancel depends on the phase, which the main thread changes
 * under g_lock (so a handle is never cancelled while it is being closed):
 *
 *   PH_CONNECT  connecting: there is no handle to cancel and nothing has
 *               been written to stdout yet, so the signal thread exits 130
 *               at once.
 *   PH_QUERY    connected, running the planner estimate or waiting in
 *               pgspout_stream_open: pgspout_conn_cancel. A cancel request
 *               can reach the server before the query it is meant for (the
 *               main thread may be about to send it), so it is repeated every
 *               CANCEL_REPEAT_MS while the phase lasts.
 *   PH_STREAM   streaming: pgspout_stream_cancel; the main thread's next
 *               pgspout_stream_next_chunk reports ECANCELLED.
 *   PH_END      the stream is closed: nothing left to cancel.
 *
 * A second signal exits 130 at once, whatever the phase (e.g. stdout is a
 * pipe nobody reads). Any signal received makes the exit status 130. */
enum { PH_CONNECT, PH_QUERY, PH_STREAM, PH_END };
enum { CANCEL_REPEAT_MS = 500 };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_phase = PH_CONNECT; /* under g_lock */
static int g_interrupted;        /* under g_lock */
static pgspout_conn *g_conn;     /* under g_lock: set for PH_QUERY */
static pgspout_stream *g_stream; /* under g_lock: set for PH_STREAM */

static void exit_interrupted_now(void)
{
    static const char msg[] = "pgspout: interrupted\n";
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

/* ----------------------------------------------------------- progress */
static int g_tty;
static void human_bytes(char *dst, size_t n, double b)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(dst, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

/* One status line on stderr. The bar, the percentage and the ETA appear only
 * when the total is known (expected_rows). The bytes are the value bytes
 * received from the server (pgspout_stats.bytes_received), not the bytes
 * written to stdout, which quoting and JSON keys make larger. */
static void progress(const pgspout_stats *st, void *ud)
{
    (void)ud;
    char bytes[32], rate[32], head[48] = "", eta[32] = "";
    human_bytes(bytes, sizeof bytes, (double)st->bytes_received);
    human_bytes(rate, sizeof rate, st->bytes_per_sec);
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
    fprintf(stderr, "%s%s%llu rows  %.0f rows/s  %s of values received (%s/s)  %.1fs%s%s",
            g_tty ? "\r" : "", head, (unsigned long long)st->rows_delivered, st->rows_per_sec,
            bytes, rate, st->elapsed, eta, g_tty ? "\033[K" : "\n");
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

/* ------------------------------------------------------------- output */
/* Stdout is fully buffered (1 MiB) for throughput on fast streams, and
 * flushed whenever the stream would wait for the server, so slow streams
 * reach a pipe row by row. */
static char g_outbuf[1 << 20];

/* After a failed write to stdout: EPIPE (the reader went away) stops quietly;
 * anything else is reported. Returns the exit status to use. */
static int output_failed(int err)
{
    if (err == EPIPE)
        return 0;
    fprintf(stderr, "pgspout: writing output: %s\n", strerror(err));
    return EXIT_QUERY;
}

/* Write every row of s to stdout. Returns 0 with the stream's last code in
 * *rc (PGSPOUT_DONE, or the error that ended it), or the exit status of a
 * failed write with *write_err set. */
static int stream_rows(pgspout_stream *s, int fmt, int header, int *rc, int *write_err)
{
    if (header && out_header(stdout, fmt, s) != 0) {
        *write_err = 1;
        return output_failed(errno);
    }
    for (;;) {
        const pgspout_chunk *c;
        int r = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &c);
        if (r == PGSPOUT_AGAIN || r == PGSPOUT_PAUSED) {
            /* nothing to write until the server sends more: hand over what
             * is buffered now, then wait */
            if (fflush(stdout) != 0) {
                *write_err = 1;
                return output_failed(errno);
            }
            r = pgspout_stream_next_chunk(s, 0, &c);
        }
        if (r != PGSPOUT_OK) {
            *rc = r;
            return 0;
        }
        int w = out_chunk(stdout, fmt, s, c, rc);
        if (w == OUT_ELIB)
            return 0;
        if (w != 0) {
            *write_err = 1;
            return output_failed(errno);
        }
    }
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

/* -------------------------------------------------------------- main */
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
    return NULL;
}

/* The name to quote for a key only the progress line uses (static storage:
 * key itself may be freed), or NULL. */
static const char *progress_only(int ch, const char *key)
{
    static const char *const keys[] = {"expected_rows", "progress_rows", "progress_interval"};
    if (ch == 'e')
        return "--expected-rows";
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0)
            return keys[i];
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"dsn", required_argument, NULL, 'd'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"no-header", no_argument, NULL, 'H'},
                                             {"chunk-rows", required_argument, NULL, 'c'},
                                             {"max-rows", required_argument, NULL, 'n'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {"option", required_argument, NULL, 'o'},
                                             {"progress", no_argument, NULL, 'p'},
                                             {"expected-rows", required_argument, NULL, 'e'},
                                             {"metrics", required_argument, NULL, 'm'},
                                             {"null-param", required_argument, NULL, 'N'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    const char *dsn = getenv("PGSPOUT_DSN"), *metrics_file = NULL, *null_param = NULL;
    const char *progress_key = NULL;
    int fmt = FMT_NDJSON, header = 1, want_progress = 0, expected_given = 0, interval_given = 0;
    int exit_code = 0, ch, rc = PGSPOUT_OK, write_err = 0, connecting = 0;
    static sigset_t set;
    pthread_t sig_tid;
    pgspout_conn *conn = NULL;
    pgspout_stream *s = NULL;
    const char **params = NULL;
    pgspout_options *opts = pgspout_options_new();
    if (opts == NULL) {
        fprintf(stderr, "pgspout: out of memory\n");
        return EXIT_QUERY;
    }
    while ((ch = getopt_long(argc, argv, "d:f:c:n:t:o:pe:m:hV", longopts, NULL)) != -1) {
        const char *key = NULL, *val = optarg;
        char *kv = NULL;
        switch (ch) {
        case 'd': dsn = optarg; continue;
        case 'f':
            if ((fmt = out_format(optarg)) < 0) {
                fprintf(stderr, "pgspout: unknown format \"%s\" (ndjson, csv or tsv)\n", optarg);
                exit_code = EXIT_USAGE;
                goto done;
            }
            continue;
        case 'H': header = 0; continue;
        case 'c': key = "chunk_rows"; break;
        case 'n': key = "max_rows"; break;
        case 't': key = "timeout"; break;
        case 'e': key = "expected_rows"; break;
        case 'o': {
            if ((kv = strdup(optarg)) == NULL) {
                fprintf(stderr, "pgspout: out of memory\n");
                exit_code = EXIT_QUERY;
                goto done;
            }
            char *eq = strchr(kv, '=');
            if (eq == NULL) {
                fprintf(stderr, "pgspout: --option wants KEY=VALUE, got \"%s\"\n", optarg);
                free(kv);
                exit_code = EXIT_USAGE;
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
        case 'p': want_progress = 1; continue;
        case 'm': metrics_file = optarg; continue;
        case 'N': null_param = optarg; continue;
        case 'h': usage(stdout); goto done;
        case 'V':
            printf("pgspout %s (transport %s)\n", pgspout_version(), pgspout_transport());
            goto done;
        default:
            usage(stderr);
            exit_code = EXIT_USAGE;
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
    if (optind >= argc) {
        usage(stderr);
        exit_code = EXIT_USAGE;
        goto done;
    }
    if (progress_key && !want_progress) {
        /* only the progress line uses them */
        fprintf(stderr, "pgspout: %s needs --progress\n", progress_key);
        exit_code = EXIT_USAGE;
        goto done;
    }
    const char *sql = argv[optind];
    const int nparams = argc - optind - 1;
    if ((params = calloc((size_t)nparams + 1, sizeof *params)) == NULL) {
        fprintf(stderr, "pgspout: out of memory\n");
        exit_code = EXIT_QUERY;
        goto done;
    }
    for (int i = 0; i < nparams; i++) {
        const char *p = argv[optind + 1 + i];
        params[i] = null_param && strcmp(p, null_param) == 0 ? NULL : p;
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
    setvbuf(stdout, g_outbuf, _IOFBF, sizeof g_outbuf);

    /* connection keys (-o connect_timeout=5s, application_name=...) apply
     * here; the stream keys of opts are for pgspout_stream_open */
    connecting = 1;
    rc = pgspout_connect_opts(dsn ? dsn : "", opts, &conn);
    if (rc != PGSPOUT_OK) {
        report(rc, conn ? pgspout_conn_error(conn) : NULL, NULL);
        exit_code = rc == PGSPOUT_ECONNECT ? EXIT_CONNECT : EXIT_QUERY;
        goto done;
    }
    if (enter_phase(PH_QUERY, conn, NULL))
        goto done;
    if (want_progress) {
        g_tty = isatty(STDERR_FILENO);
        if (!interval_given)
            pgspout_options_set(opts, "progress_interval", g_tty ? "200ms" : "1s");
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
    /* a failed stdout has nothing more to take: flush only a good one */
    if (!write_err && fflush(stdout) != 0)
        exit_code = output_failed(errno), write_err = 1;
    if (rc < 0 && !write_err) {
        exit_code = rc == PGSPOUT_ECONN                            ? EXIT_CONNECT
                    : rc == PGSPOUT_EVALUE || rc == PGSPOUT_EINVAL ? EXIT_USAGE
                                                                   : EXIT_QUERY;
        pthread_mutex_lock(&g_lock);
        int interrupted = g_interrupted;
        pthread_mutex_unlock(&g_lock);
        if (!interrupted)
            report(rc, s ? pgspout_stream_error(s) : pgspout_conn_error(conn),
                   s ? pgspout_stream_sqlstate(s) : NULL);
    }

done:
    enter_phase(PH_END, NULL, NULL);
    pgspout_stream_close(s);
    pgspout_conn_close(conn);
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
    free(params);
    pgspout_options_free(opts);
    pthread_mutex_lock(&g_lock);
    if (g_interrupted) {
        fputs("pgspout: interrupted\n", stderr);
        exit_code = EXIT_INTERRUPTED;
    }
    pthread_mutex_unlock(&g_lock);
    return exit_code;
}
