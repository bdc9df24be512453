/*
 * transport.c - which libpq transport moves a large result fastest while
 * keeping client memory bounded?
 *
 *   transport [--runs N] DSN [NAME=SQL ...]
 *
 * Default queries: json="SELECT data FROM bench_json" and
 * typed="SELECT * FROM bench_typed" (tables made by bench/run.sh). For each
 * query and transport, a forked child connects, reads the whole result and
 * touches every value (length summed, first byte read, as raw_libpq.c does);
 * the parent takes the best wall time of N runs (default 3) and the child's
 * CPU time and peak RSS from wait4(); the server backend's CPU time comes
 * from /proc/<backend pid>/stat (same machine), "?" when unreadable.
 * Transports:
 *
 *   single-row       PQsendQueryParams + PQsetSingleRowMode (one PGresult/row)
 *   chunked-1000     PQsetChunkedRowsMode(1000) - only with libpq >= 17
 *   cursor-1000      BEGIN; DECLARE c NO SCROLL CURSOR; FETCH 1000 until empty
 *   cursor-10000     the same with FETCH 10000
 *   cursor-10000-pl  FETCH 10000 in pipeline mode, next FETCH already in
 *                    flight while the previous batch is processed
 *   copy             COPY (SQL) TO STDOUT, text format, fields split on tabs
 *                    with backslash escapes honoured (the parsing a client of
 *                    COPY would have to do)
 *
 * Prints a Markdown table on stdout, progress on stderr.
 * Build: cc -O2 -o transport transport.c $(pkg-config --cflags --libs libpq)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <libpq-fe.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    unsigned long long rows, bytes, check;
    double wall;       /* seconds from sending the query to the last row */
    double server_cpu; /* the backend's user+sys seconds meanwhile, -1 unknown */
    int ok;
} outcome;

/* user+sys CPU seconds of a process from /proc (the server runs on this
 * machine in bench/run.sh); -1 when unreadable. */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after "pid (comm)" */
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void touch_result(PGresult *res, outcome *o)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);
    for (int r = 0; r < nrows; r++) {
        for (int c = 0; c < ncols; c++) {
            int len = PQgetlength(res, r, c);
            o->bytes += (unsigned long long)len;
            if (len > 0)
                o->check += (unsigned char)PQgetvalue(res, r, c)[0];
        }
    }
    o->rows += (unsigned long long)nrows;
}

static int fail(PGconn *conn, const char *what, PGresult *res)
{
    fprintf(stderr, "transport: %s: %s", what,
            res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
    if (res)
        PQclear(res);
    return 0;
}

static int exec_ok(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return fail(conn, sql, res);
    PQclear(res);
    return 1;
}

static int run_rowmode(PGconn *conn, const char *sql, int chunk, outcome *o)
{
    if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0))
        return fail(conn, "send", NULL);
#ifdef LIBPQ_HAS_CHUNK_MODE
    if (chunk > 0 ? !PQsetChunkedRowsMode(conn, chunk) : !PQsetSingleRowMode(conn))
        return fail(conn, "row mode", NULL);
#else
    (void)chunk;
    if (!PQsetSingleRowMode(conn))
        return fail(conn, "single-row mode", NULL);
#endif
    PGresult *res;
    int ok = 1;
    while ((res = PQgetResult(conn)) != NULL) {
        switch (PQresultStatus(res)) {
        case PGRES_SINGLE_TUPLE:
#ifdef LIBPQ_HAS_CHUNK_MODE
        case PGRES_TUPLES_CHUNK:
#endif
        case PGRES_TUPLES_OK:
            touch_result(res, o);
            PQclear(res);
            break;
        default: ok = fail(conn, "stream", res);
        }
    }
    return ok;
}

static int declare(PGconn *conn, const char *sql)
{
    size_t n = strlen(sql) + 64;
    char *q = malloc(n);
    if (q == NULL)
        return 0;
    snprintf(q, n, "DECLARE bench_c NO SCROLL CURSOR FOR %s", sql);
    int ok = exec_ok(conn, "BEGIN") && exec_ok(conn, q);
    free(q);
    return ok;
}

static int run_cursor(PGconn *conn, const char *sql, int batch, outcome *o)
{
    char fetch[64];
    snprintf(fetch, sizeof fetch, "FETCH %d FROM bench_c", batch);
    if (!declare(conn, sql))
        return 0;
    for (;;) {
        PGresult *res = PQexec(conn, fetch);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return fail(conn, fetch, res);
        int n = PQntuples(res);
        touch_result(res, o);
        PQclear(res);
        if (n < batch)
            break;
    }
    return exec_ok(conn, "CLOSE bench_c") && exec_ok(conn, "COMMIT");
}

/* FETCH in pipeline mode with one more FETCH always in flight. */
static int run_cursor_pipelined(PGconn *conn, const char *sql, int batch, outcome *o)
{
    char fetch[64];
    snprintf(fetch, sizeof fetch, "FETCH %d FROM bench_c", batch);
    if (!declare(conn, sql))
        return 0;
    if (!PQenterPipelineMode(conn))
        return fail(conn, "pipeline mode", NULL);
    int inflight = 0, more = 1, ok = 1;
    for (int i = 0; i < 2; i++) {
        if (!PQsendQueryParams(conn, fetch, 0, NULL, NULL, NULL, NULL, 0))
            return fail(conn, "send fetch", NULL);
        inflight++;
    }
    if (!PQsendFlushRequest(conn) || PQflush(conn) < 0)
        return fail(conn, "flush", NULL);
    while (inflight > 0) {
        PGresult *res = PQgetResult(conn);
        if (res == NULL)
            continue; /* end of one FETCH's results */
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ok = fail(conn, fetch, res);
            break;
        }
        int n = PQntuples(res);
        inflight--;
        if (n < batch)
            more = 0;
        else if (more) {
            if (!PQsendQueryParams(conn, fetch, 0, NULL, NULL, NULL, NULL, 0) ||
                !PQsendFlushRequest(conn) || PQflush(conn) < 0)
                return fail(conn, "send fetch", NULL);
            inflight++;
        }
        touch_result(res, o);
        PQclear(res);
    }
    if (!ok)
        return 0;
    if (!PQpipelineSync(conn))
        return fail(conn, "sync", NULL);
    for (;;) {
        PGresult *res = PQgetResult(conn);
        if (res == NULL)
            continue;
        ExecStatusType st = PQresultStatus(res);
        PQclear(res);
        if (st == PGRES_PIPELINE_SYNC)
            break;
    }
    if (!PQexitPipelineMode(conn))
        return fail(conn, "exit pipeline", NULL);
    return exec_ok(conn, "CLOSE bench_c") && exec_ok(conn, "COMMIT");
}

static int run_copy(PGconn *conn, const char *sql, outcome *o)
{
    size_t n = strlen(sql) + 32;
    char *q = malloc(n);
    if (q == NULL)
        return 0;
    snprintf(q, n, "COPY (%s) TO STDOUT", sql);
    PGresult *res = PQexec(conn, q);
    free(q);
    if (PQresultStatus(res) != PGRES_COPY_OUT)
        return fail(conn, "copy", res);
    PQclear(res);
    char *line;
    int len;
    while ((len = PQgetCopyData(conn, &line, 0)) > 0) {
        /* split on tabs, honour backslash escapes, drop the newline */
        int start = 1;
        for (int i = 0; i < len; i++) {
            char ch = line[i];
            if (start) {
                o->check += (unsigned char)ch;
                start = 0;
            }
            if (ch == '\t') {
                start = 1;
            } else if (ch == '\\') {
                i++;
                o->bytes++;
            } else if (ch != '\n') {
                o->bytes++;
            }
        }
        o->rows++;
        PQfreemem(line);
    }
    if (len == -2)
        return fail(conn, "copy data", NULL);
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return fail(conn, "copy end", res);
    PQclear(res);
    return 1;
}

enum { T_SINGLE, T_CHUNKED, T_CURSOR1000, T_CURSOR10000, T_CURSOR_PL, T_COPY, T_N };
static const char *tnames[T_N] = {"single-row",   "chunked-1000",    "cursor-1000",
                                  "cursor-10000", "cursor-10000-pl", "copy"};

static outcome run_one(const char *dsn, const char *sql, int t)
{
    outcome o = {0, 0, 0, 0, -1, 0};
    PGconn *conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "transport: connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return o;
    }
    int backend = PQbackendPID(conn);
    double s0 = proc_cpu(backend);
    double t0 = now();
    switch (t) {
    case T_SINGLE: o.ok = run_rowmode(conn, sql, 0, &o); break;
    case T_CHUNKED: o.ok = run_rowmode(conn, sql, 1000, &o); break;
    case T_CURSOR1000: o.ok = run_cursor(conn, sql, 1000, &o); break;
    case T_CURSOR10000: o.ok = run_cursor(conn, sql, 10000, &o); break;
    case T_CURSOR_PL: o.ok = run_cursor_pipelined(conn, sql, 10000, &o); break;
    case T_COPY: o.ok = run_copy(conn, sql, &o); break;
    }
    o.wall = now() - t0;
    double s1 = proc_cpu(backend);
    if (s0 >= 0 && s1 >= 0)
        o.server_cpu = s1 - s0;
    PQfinish(conn);
    return o;
}

typedef struct {
    outcome o;
    double cpu;    /* user + sys seconds of the child */
    double rss_mb; /* peak RSS of the child */
} measured;

/* Run transport t in a fresh child process; 0 on failure. */
static int measure(const char *dsn, const char *sql, int t, measured *m)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        close(fds[0]);
        outcome o = run_one(dsn, sql, t);
        ssize_t w = write(fds[1], &o, sizeof o);
        _exit(w == (ssize_t)sizeof o && o.ok ? 0 : 1);
    }
    close(fds[1]);
    ssize_t r = read(fds[0], &m->o, sizeof m->o);
    close(fds[0]);
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
    }
    if (r != (ssize_t)sizeof m->o || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 0;
    m->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    m->rss_mb = (double)ru.ru_maxrss / 1024.0;
    return 1;
}

int main(int argc, char **argv)
{
    int runs = 3, a = 1;
    if (a + 1 < argc && strcmp(argv[a], "--runs") == 0) {
        runs = atoi(argv[a + 1]);
        a += 2;
    }
    if (a >= argc || runs < 1) {
        fprintf(stderr, "usage: %s [--runs N] DSN [NAME=SQL ...]\n", argv[0]);
        return 2;
    }
    const char *dsn = argv[a++];
    static const char *defaults[] = {"json=SELECT data FROM bench_json",
                                     "typed=SELECT * FROM bench_typed"};
    const char **queries = (const char **)(argv + a);
    int nq = argc - a;
    if (nq == 0) {
        queries = defaults;
        nq = 2;
    }

    printf("libpq %d, best of %d runs, each in a fresh process\n\n", PQlibVersion(), runs);
    printf("| dataset | transport | rows | rows/s | MB/s | vs single-row | client CPU s | "
           "server CPU s | peak RSS MB |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    int failures = 0;
    for (int q = 0; q < nq; q++) {
        const char *eq = strchr(queries[q], '=');
        if (eq == NULL) {
            fprintf(stderr, "transport: expected NAME=SQL, got %s\n", queries[q]);
            return 2;
        }
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq - queries[q]), queries[q]);
        const char *sql = eq + 1;
        double base = 0;
        for (int t = 0; t < T_N; t++) {
#ifndef LIBPQ_HAS_CHUNK_MODE
            if (t == T_CHUNKED) {
                printf("| %s | %s | - | n/a (libpq < 17) | | | | | |\n", name, tnames[t]);
                continue;
            }
#endif
            measured best = {{0, 0, 0, 1e30, -1, 0}, 0, 0};
            int ok = 0;
            for (int r = 0; r < runs; r++) {
                measured m;
                if (!measure(dsn, sql, t, &m)) {
                    fprintf(stderr, "transport: %s/%s run %d failed\n", name, tnames[t], r + 1);
                    continue;
                }
                fprintf(stderr,
                        "transport: %s %s run %d: %.3f s, cpu %.3f s, server cpu %.2f s, "
                        "rss %.1f MB\n",
                        name, tnames[t], r + 1, m.o.wall, m.cpu, m.o.server_cpu, m.rss_mb);
                if (m.o.wall < best.o.wall)
                    best = m;
                ok = 1;
            }
            if (!ok) {
                failures++;
                printf("| %s | %s | failed | | | | | | |\n", name, tnames[t]);
                continue;
            }
            double rps = (double)best.o.rows / best.o.wall;
            if (t == T_SINGLE)
                base = rps;
            char server[32] = "?";
            if (best.o.server_cpu >= 0)
                snprintf(server, sizeof server, "%.2f", best.o.server_cpu);
            printf("| %s | %s | %llu | %.0f | %.1f | %.2fx | %.2f | %s | %.1f |\n", name, tnames[t],
                   best.o.rows, rps, (double)best.o.bytes / 1e6 / best.o.wall,
                   base > 0 ? rps / base : 0.0, best.cpu, server, best.rss_mb);
            fflush(stdout);
        }
    }
    return failures ? 1 : 0;
}
