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
            "  -o, --option KEY=VAL   any stream option (max_memory=64MB, label=x, ...)\n"
            "  -p, --progress         live progress on stderr (rows, rows/s, bytes, ETA)\n"
            "  -e, --expected-rows N  total rows for the progress ETA (default: planner estimate)\n"
            "  -m, --metrics FILE     write Prometheus metrics text to FILE at the end\n"
            "      --null-param TEXT  a PARAM equal to TEXT is sent as SQL NULL\n"
            "  -h, --help             this text\n"
            "  -V, --version          print the version\n"
            "NULL params: see --null-param. Exit: 0 ok, 1 query error, 2 usage, 3 connection, 130 "
            "interrupted.\n");
}

static pgspout_stream *volatile g_stream;
static volatile int g_interrupted;

/* SIGINT/SIGTERM are blocked in every thread but this one, which turns them
 * into a cancel of the running stream (pgspout_stream_cancel is any-thread). */
static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    int sig;
    while (sigwait(set, &sig) == 0) {
        g_interrupted = 1;
        if (g_stream)
            pgspout_stream_cancel(g_stream);
    }
    return NULL;
}

static int g_tty;
static void human_bytes(char *dst, size_t n, double b)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(dst, n, "%.1f %s", b, u[i]);
}

static void progress(const pgspout_stats *st, void *ud)
{
    (void)ud;
    char bytes[32], rate[32];
    human_bytes(bytes, sizeof bytes, (double)st->bytes_received);
    human_bytes(rate, sizeof rate, st->bytes_per_sec);
    char bar[24] = "";
    if (st->progress >= 0) {
        int w = 20, fill = (int)(st->progress * w + 0.5);
        bar[0] = '[';
        for (int i = 0; i < w; i++)
            bar[1 + i] = i < fill ? '#' : '.';
        bar[w + 1] = ']';
        bar[w + 2] = '\0';
    }
    char eta[32] = "";
    if (st->eta >= 0)
        snprintf(eta, sizeof eta, " ETA %.0fs", st->eta);
    int ended = st->state >= PGSPOUT_STATE_DONE;
    fprintf(stderr, "%s%s %llu rows%s%.0f%%  %.0f rows/s  %s  %s/s  %.1fs%s%s", g_tty ? "\r" : "",
            bar, (unsigned long long)st->rows_delivered, st->progress >= 0 ? " " : "",
            st->progress >= 0 ? st->progress * 100 : 0, st->rows_per_sec, bytes, rate, st->elapsed,
            ended ? "" : eta, g_tty ? "\033[K" : "\n");
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
    pgspout_stream *s;
    long long est = -1;
    if (pgspout_stream_open(conn, explain, nparams, params, NULL, &s) == PGSPOUT_OK) {
        const pgspout_row *r;
        if (pgspout_stream_next(s, &r) == PGSPOUT_OK) {
            const char *p = strstr(pgspout_row_value(r, 0, NULL), "\"Plan Rows\":");
            if (p)
                est = strtoll(p + 12, NULL, 10);
        }
    }
    pgspout_stream_close(s);
    free(explain);
    return est;
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
    int fmt = FMT_NDJSON, header = 1, want_progress = 0, expected_given = 0;
    pgspout_options *opts = pgspout_options_new();
    if (opts == NULL) {
        fprintf(stderr, "pgspout: out of memory\n");
        return EXIT_QUERY;
    }
    int ch, rc;
    while ((ch = getopt_long(argc, argv, "d:f:c:n:t:o:pe:m:hV", longopts, NULL)) != -1) {
        const char *key = NULL, *val = optarg;
        char *kv = NULL;
        switch (ch) {
        case 'd': dsn = optarg; continue;
        case 'f':
            if ((fmt = out_format(optarg)) < 0) {
                fprintf(stderr, "pgspout: unknown format \"%s\" (ndjson, csv or tsv)\n", optarg);
                return EXIT_USAGE;
            }
            continue;
        case 'H': header = 0; continue;
        case 'c': key = "chunk_rows"; break;
        case 'n': key = "max_rows"; break;
        case 't': key = "timeout"; break;
        case 'e':
            key = "expected_rows";
            expected_given = 1;
            break;
        case 'o':
            kv = strdup(optarg);
            char *eq = kv ? strchr(kv, '=') : NULL;
            if (eq == NULL) {
                fprintf(stderr, "pgspout: --option wants KEY=VALUE, got \"%s\"\n", optarg);
                return EXIT_USAGE;
            }
            *eq = '\0';
            key = kv, val = eq + 1;
            if (strcmp(key, "expected_rows") == 0)
                expected_given = 1;
            break;
        case 'p': want_progress = 1; continue;
        case 'm': metrics_file = optarg; continue;
        case 'N': null_param = optarg; continue;
        case 'h': usage(stdout); return 0;
        case 'V':
            printf("pgspout %s (transport %s)\n", pgspout_version(), pgspout_transport());
            return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
        if ((rc = pgspout_options_set(opts, key, val)) != PGSPOUT_OK) {
            fprintf(stderr, "pgspout: %s\n", pgspout_options_error(opts));
            return EXIT_USAGE;
        }
        free(kv);
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sql = argv[optind];
    int nparams = argc - optind - 1;
    const char **params = calloc((size_t)nparams + 1, sizeof *params);
    for (int i = 0; params && i < nparams; i++) {
        const char *p = argv[optind + 1 + i];
        params[i] = null_param && strcmp(p, null_param) == 0 ? NULL : p;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t sig_tid;
    pthread_create(&sig_tid, NULL, signal_thread, &set);
    signal(SIGPIPE, SIG_IGN);
    static char outbuf[1 << 20];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);

    pgspout_conn *conn;
    if ((rc = pgspout_connect(dsn ? dsn : "", &conn)) != PGSPOUT_OK) {
        fprintf(stderr, "pgspout: %s\n", pgspout_conn_error(conn));
        pgspout_conn_close(conn);
        return rc == PGSPOUT_ECONNECT ? EXIT_CONNECT : EXIT_USAGE;
    }
    if (want_progress) {
        g_tty = isatty(STDERR_FILENO);
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

    int exit_code = 0;
    pgspout_stream *s;
    rc = pgspout_stream_open(conn, sql, nparams, params, opts, &s);
    g_stream = s;
    if (rc == PGSPOUT_OK && header && out_header(stdout, fmt, s) != 0)
        rc = PGSPOUT_ECANCELLED;
    const pgspout_chunk *c;
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next_chunk(s, 0, &c)) == PGSPOUT_OK) {
        if (out_chunk(stdout, fmt, s, c) != 0) {
            if (errno != EPIPE)
                fprintf(stderr, "pgspout: writing output: %s\n", strerror(errno));
            else
                exit_code = -1; /* reader went away: stop quietly */
            break;
        }
    }
    if (fflush(stdout) != 0 && errno != EPIPE && exit_code == 0) {
        fprintf(stderr, "pgspout: writing output: %s\n", strerror(errno));
        exit_code = EXIT_QUERY;
    }
    if (rc < 0) {
        fprintf(stderr, "pgspout: %s: %s\n", pgspout_strerror(rc),
                s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
        exit_code = g_interrupted                                  ? EXIT_INTERRUPTED
                    : rc == PGSPOUT_ECONN                          ? EXIT_CONNECT
                    : rc == PGSPOUT_EVALUE || rc == PGSPOUT_EINVAL ? EXIT_USAGE
                                                                   : EXIT_QUERY;
    } else if (exit_code < 0) {
        exit_code = 0;
    }
    g_stream = NULL;
    pgspout_stream_close(s);
    pgspout_conn_close(conn);
    if (metrics_file) {
        char *text = pgspout_metrics_prometheus();
        FILE *f = fopen(metrics_file, "w");
        if (f == NULL || text == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "pgspout: writing metrics to %s failed\n", metrics_file);
            exit_code = exit_code ? exit_code : EXIT_QUERY;
        }
        pgspout_free(text);
    }
    free(params);
    pgspout_options_free(opts);
    return exit_code;
}
