/* overhead.c - what metrics and limits cost (issue 3): the same stream with
 * every limit and the metrics on, against metrics off and no limits.
 *
 *   overhead DSN SQL [RUNS]
 *
 * Runs alternate (plain, limited, plain, ...) in one process so both see the
 * same machine; each touches every value like bench/pgspout_c.c. Prints a
 * Markdown table with the best rows/s and the least client CPU of each, and
 * their ratios. Limits are set high enough never to trigger: the point is
 * the price of checking them. */
#include <pgspout.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void set(pgspout_options *o, const char *k, const char *v)
{
    if (pgspout_options_set(o, k, v) != PGSPOUT_OK) {
        fprintf(stderr, "overhead: %s\n", pgspout_options_error(o));
        exit(2);
    }
}

static volatile size_t touched; /* keeps the reads from being optimised out */

/* One stream; returns rows, or -1. *secs and *cpus get wall and CPU time. */
static long run(pgspout_conn *c, const char *sql, const pgspout_options *o, double *secs,
                double *cpus)
{
    double t0 = now(), c0 = cpu();
    pgspout_stream *s;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    long rows = 0;
    const pgspout_row *r;
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        int n = pgspout_row_ncols(r);
        for (int i = 0; i < n; i++) {
            size_t len;
            const char *v = pgspout_row_value(r, i, &len);
            touched += len + (size_t)v[0];
        }
        rows++;
    }
    if (rc != PGSPOUT_DONE) {
        fprintf(stderr, "overhead: %s: %s\n", pgspout_strerror(rc), pgspout_stream_error(s));
        rows = -1;
    }
    pgspout_stream_close(s);
    *secs = now() - t0;
    *cpus = cpu() - c0;
    return rows;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: overhead DSN SQL [RUNS]\n");
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    pgspout_conn *c;
    if (pgspout_connect(argv[1], &c) != PGSPOUT_OK) {
        fprintf(stderr, "overhead: %s\n", pgspout_conn_error(c));
        return 1;
    }
    pgspout_options *plain = pgspout_options_new(), *limited = pgspout_options_new();
    set(plain, "metrics", "off");
    set(limited, "metrics", "on");
    set(limited, "label", "bench");
    set(limited, "max_memory", "64MB");
    set(limited, "memory_warn", "0.8");
    set(limited, "memory_fail", "1.0");
    set(limited, "max_rows", "1000000000");
    set(limited, "timeout", "1h");
    set(limited, "statement_timeout", "1h");
    set(limited, "pause_timeout", "1min");
    set(limited, "max_rate", "1000000000");
    set(limited, "expected_rows", "1000000");
    double best[2] = {1e30, 1e30}, best_cpu[2] = {1e30, 1e30};
    long rows = 0;
    for (int i = 0; i < runs; i++)
        for (int k = 0; k < 2; k++) {
            double secs, cpus;
            rows = run(c, argv[2], k ? limited : plain, &secs, &cpus);
            if (rows < 0)
                return 1;
            if (secs < best[k])
                best[k] = secs;
            if (cpus < best_cpu[k])
                best_cpu[k] = cpus;
        }
    printf("| stream (%ld rows, best of %d, interleaved) | rows/s | vs plain | client CPU s | vs "
           "plain |\n",
           rows, runs);
    printf("|---|---:|---:|---:|---:|\n");
    const char *names[2] = {"metrics off, no limits", "metrics on, every limit set"};
    for (int k = 0; k < 2; k++)
        printf("| %s | %.0f | %.3fx | %.3f | %.3fx |\n", names[k], (double)rows / best[k],
               best[0] / best[k], best_cpu[k], best_cpu[k] / best_cpu[0]);
    pgspout_options_free(plain);
    pgspout_options_free(limited);
    pgspout_conn_close(c);
    return 0;
}
