/*
 * soak.c - memory stays flat under a long run of concurrent streams.
 *
 *   soak [--threads N] [--seconds S] [--rows R] [--interval S] [--max-growth PCT] DSN
 *
 * N threads (default 8), each with its own connection, open streams of R rows
 * (default 100000; `SELECT g, md5(g::text) FROM generate_series(1, $1) g`)
 * back to back for S seconds (default 600). Every row is checked (count and
 * the sum of g); every 10th stream is cancelled half-way and every 7th closed
 * half-way, after which the same connection must run the next stream. The
 * main thread samples the process's RSS every interval (default 10 s).
 *
 * Verdict: no stream failed, and the peak RSS of the last quarter of the run
 * is at most PCT (default 10) percent above the peak of the second quarter
 * (the first quarter is warm-up). Exit 0 when both hold, 1 otherwise.
 *
 * Build: cc -O2 -pthread -Icore/include -o soak bench/soak.c -Lbuild/core -lpgspout
 *        -Wl,-rpath,$PWD/build/core      (bench/run.sh --soak does this)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pgspout.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *dsn;
static long rows_per_stream = 100000;
static double deadline;
static atomic_ullong total_rows, total_streams, cancelled, closed_early, failures;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void fail(int thread, const char *what, const char *msg)
{
    atomic_fetch_add(&failures, 1);
    fprintf(stderr, "soak: thread %d: %s: %s\n", thread, what, msg);
}

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    char param[32];
    snprintf(param, sizeof param, "%ld", rows_per_stream);
    const char *params[1] = {param};
    pgspout_options *opts = pgspout_options_new();
    if (opts == NULL || pgspout_options_set(opts, "label", "soak") != PGSPOUT_OK) {
        fail(id, "options", "cannot create");
        return NULL;
    }
    pgspout_conn *conn = NULL;
    if (pgspout_connect(dsn, &conn) != PGSPOUT_OK) {
        fail(id, "connect", conn ? pgspout_conn_error(conn) : "out of memory");
        pgspout_conn_close(conn);
        pgspout_options_free(opts);
        return NULL;
    }
    unsigned long long n = 0;
    while (now() < deadline) {
        n++;
        int cancel_half = n % 10 == 0, close_half = !cancel_half && n % 7 == 0;
        pgspout_stream *s = NULL;
        int rc = pgspout_stream_open(
            conn, "SELECT g, md5(g::text) FROM generate_series(1, $1::int) g", 1, params, opts, &s);
        if (rc != PGSPOUT_OK) {
            fail(id, "open", s ? pgspout_stream_error(s) : pgspout_strerror(rc));
            pgspout_stream_close(s);
            break;
        }
        const pgspout_row *row;
        long got = 0;
        long long sum = 0;
        while ((rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK) {
            got++;
            sum += atoll(pgspout_row_value(row, 0, NULL));
            if (got == rows_per_stream / 2 && cancel_half)
                pgspout_stream_cancel(s);
            if (got == rows_per_stream / 2 && close_half)
                break;
        }
        atomic_fetch_add(&total_rows, (unsigned long long)got);
        atomic_fetch_add(&total_streams, 1);
        if (close_half) {
            atomic_fetch_add(&closed_early, 1);
        } else if (cancel_half) {
            /* a cancel may lose the race with the last rows: DONE is fine */
            if (rc == PGSPOUT_ECANCELLED)
                atomic_fetch_add(&cancelled, 1);
            else if (rc != PGSPOUT_DONE)
                fail(id, "cancelled stream", pgspout_stream_error(s));
        } else if (rc != PGSPOUT_DONE) {
            fail(id, "stream", pgspout_stream_error(s));
        } else if (got != rows_per_stream ||
                   sum != (long long)rows_per_stream * (rows_per_stream + 1) / 2) {
            char msg[128];
            snprintf(msg, sizeof msg, "%ld rows, sum %lld", got, sum);
            fail(id, "wrong rows", msg);
        }
        pgspout_stream_close(s);
        if (!pgspout_conn_ok(conn)) {
            fail(id, "connection", "not usable after the stream");
            break;
        }
    }
    pgspout_conn_close(conn);
    pgspout_options_free(opts);
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 8, a = 1;
    double seconds = 600, interval = 10, max_growth = 10;
    for (; a + 1 < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
        if (strcmp(argv[a], "--threads") == 0)
            threads = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "--seconds") == 0)
            seconds = atof(argv[a + 1]);
        else if (strcmp(argv[a], "--rows") == 0)
            rows_per_stream = atol(argv[a + 1]);
        else if (strcmp(argv[a], "--interval") == 0)
            interval = atof(argv[a + 1]);
        else if (strcmp(argv[a], "--max-growth") == 0)
            max_growth = atof(argv[a + 1]);
        else
            break;
    }
    if (a != argc - 1 || threads < 1 || seconds <= 0 || rows_per_stream < 2 || interval <= 0) {
        fprintf(stderr,
                "usage: %s [--threads N] [--seconds S] [--rows R] [--interval S] "
                "[--max-growth PCT] DSN\n",
                argv[0]);
        return 2;
    }
    dsn = argv[a];
    double start = now();
    deadline = start + seconds;
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (tids == NULL)
        return 1;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tids[i], NULL, worker, (void *)(long)i) != 0) {
            fprintf(stderr, "soak: cannot start thread %d\n", i);
            return 1;
        }

    long q2_peak = 0, q4_peak = 0;
    printf("| elapsed s | RSS MB | streams | rows | rows/s |\n|---:|---:|---:|---:|---:|\n");
    unsigned long long last_rows = 0;
    double last = start;
    while (now() < deadline) {
        double left = deadline - now();
        usleep((useconds_t)((left < interval ? left : interval) * 1e6));
        double t = now(), el = t - start;
        long kb = rss_kb();
        unsigned long long r = atomic_load(&total_rows);
        printf("| %.0f | %.1f | %llu | %llu | %.0f |\n", el, (double)kb / 1024,
               atomic_load(&total_streams), r, (double)(r - last_rows) / (t - last));
        fflush(stdout);
        last_rows = r;
        last = t;
        if (el > seconds * 0.25 && el <= seconds * 0.5 && kb > q2_peak)
            q2_peak = kb;
        if (el > seconds * 0.75 && kb > q4_peak)
            q4_peak = kb;
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    free(tids);

    if (q2_peak <= 0 || q4_peak <= 0) {
        fprintf(stderr, "soak: too few RSS samples for a verdict: use --interval <= seconds/8\n");
        return 1;
    }
    double growth = 100.0 * (double)(q4_peak - q2_peak) / (double)q2_peak;
    printf("\n%d threads, %.0f s: %llu streams (%llu cancelled half-way, %llu closed "
           "half-way), %llu rows, %llu failures; peak RSS second quarter %.1f MB, last "
           "quarter %.1f MB (%+.1f%%, limit %.0f%%)\n",
           threads, seconds, atomic_load(&total_streams), atomic_load(&cancelled),
           atomic_load(&closed_early), atomic_load(&total_rows), atomic_load(&failures),
           (double)q2_peak / 1024, (double)q4_peak / 1024, growth, max_growth);
    int ok = atomic_load(&failures) == 0 && growth <= max_growth;
    printf("soak: %s\n", ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
