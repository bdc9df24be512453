/*
 * formats.c - text or binary results: what each costs the server and the
 * client, per type, when the client needs the value as Arrow holds it.
 *
 *   formats [--runs N] DSN [NAME=SQL ...]
 *
 * For each query (default: each column of bench_typed and bench_json on its
 * own) and each result format, a forked child connects, streams the result
 * (PQsendQueryParams with resultFormat 0 or 1, single-row mode) and turns
 * every value into its Arrow value: text through pgspout's exact parsers
 * (pgspout_parse_*, the path pgspout_stream_arrow takes), binary through
 * the byte-order decoding a binary reader does (numeric from base-10000
 * digits to a 128-bit integer). The parent keeps the best of N runs (wall),
 * the lowest client CPU (wait4) and the lowest server backend CPU
 * (/proc/<pid>/stat; the server runs on this machine). Both formats must
 * produce the same checksum of the decoded values, or the row says so.
 *
 * Build: cc -O2 -o formats formats.c -Icore/include -Lbuild/core -lpgspout
 *        $(pkg-config --cflags --libs libpq)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <libpq-fe.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pgspout.h"

typedef struct {
    double wall, client_cpu, server_cpu;
    unsigned long long rows, check;
    int ok;
} outcome;

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
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t be64(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return be64toh(x);
}
static uint32_t be32(const char *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return ntohl(x);
}
static uint16_t be16(const char *p)
{
    uint16_t x;
    memcpy(&x, p, 2);
    return ntohs(x);
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

#define PG_EPOCH_DAYS 10957 /* 2000-01-01 - 1970-01-01 */

/* A checksum term for one value as Arrow would hold it. */
static uint64_t text_value(Oid type, const char *v, int len, int mod)
{
    int64_t x;
    double d;
    pgspout_datetime t;
    unsigned char u[16];
    switch (type) {
    case 20:
    case 21:
    case 23: pgspout_parse_int8(v, (size_t)len, &x); return (uint64_t)x;
    case 700:
    case 701: {
        pgspout_parse_float8(v, (size_t)len, &d);
        uint64_t b;
        memcpy(&b, &d, 8);
        return b;
    }
    case 16: return v[0] == 't';
    case 1700: { /* numeric(p,s): digits scaled to an integer */
        int scale = (mod - 4) & 0x7ff;
        __int128 acc = 0;
        int frac = -1, neg = v[0] == '-';
        for (int i = neg; i < len; i++) {
            if (v[i] == '.') {
                frac = 0;
                continue;
            }
            acc = acc * 10 + (v[i] - '0');
            frac += frac >= 0;
        }
        for (frac = frac < 0 ? 0 : frac; frac < scale; frac++)
            acc *= 10;
        return (uint64_t)(neg ? -acc : acc);
    }
    case 1082:
        pgspout_parse_datetime(v, (size_t)len, PGSPOUT_KIND_DATE, &t);
        return (uint64_t)days_from_civil(t.year, t.month, t.day);
    case 1184:
        pgspout_parse_datetime(v, (size_t)len, PGSPOUT_KIND_TIMESTAMPTZ, &t);
        return (uint64_t)((days_from_civil(t.year, t.month, t.day) * 86400 + t.hour * 3600 +
                           t.minute * 60 + t.second - t.utc_offset) *
                              1000000 +
                          t.usec);
    case 2950: pgspout_parse_uuid(v, (size_t)len, u); return u[0] + ((uint64_t)u[15] << 8);
    case 3802: return (uint64_t)len + 1; /* binary jsonb: a version byte + the text */
    default: return (uint64_t)len;
    }
}

static uint64_t binary_value(Oid type, const char *v, int len, int mod)
{
    switch (type) {
    case 20: return be64(v);
    case 21: return (uint64_t)(int64_t)(int16_t)be16(v);
    case 23: return (uint64_t)(int64_t)(int32_t)be32(v);
    case 700: {
        uint32_t b = be32(v);
        float f;
        memcpy(&f, &b, 4);
        double d = f;
        uint64_t r;
        memcpy(&r, &d, 8);
        return r;
    }
    case 701: return be64(v);
    case 16: return v[0] != 0;
    case 1700: { /* ndigits, weight, sign, dscale, base-10000 digits */
        int nd = be16(v), weight = (int16_t)be16(v + 2), sign = be16(v + 4);
        int scale = (mod - 4) & 0x7ff;
        __int128 acc = 0;
        /* digit k is worth 10000^(weight - k); scaled by 10^scale */
        int last = weight; /* power of 10000 of the last digit taken */
        for (int k = 0; k < nd; k++)
            acc = acc * 10000 + be16(v + 8 + 2 * k), last = weight - k;
        int e10 = 4 * last + scale; /* value = acc * 10^(4*last) * 10^scale */
        for (; e10 > 0; e10--)
            acc *= 10;
        for (; e10 < 0; e10++)
            acc /= 10;
        return (uint64_t)(sign == 0x4000 ? -acc : acc);
    }
    case 1082: return (uint64_t)((int64_t)(int32_t)be32(v) + PG_EPOCH_DAYS);
    case 1184: return be64(v) + (uint64_t)PG_EPOCH_DAYS * 86400000000ULL;
    case 2950: return (unsigned char)v[0] + ((uint64_t)(unsigned char)v[15] << 8);
    default: return (uint64_t)len;
    }
}

static outcome run_one(const char *dsn, const char *sql, int binary)
{
    outcome o = {0};
    PGconn *c = PQconnectdb(dsn);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "formats: %s", PQerrorMessage(c));
        PQfinish(c);
        return o;
    }
    int backend = PQbackendPID(c);
    double s0 = proc_cpu(backend), t0 = now();
    if (!PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, binary) || !PQsetSingleRowMode(c)) {
        fprintf(stderr, "formats: %s", PQerrorMessage(c));
        PQfinish(c);
        return o;
    }
    PGresult *r;
    o.ok = 1;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            int nf = PQnfields(r);
            for (int f = 0; f < nf; f++) {
                if (PQgetisnull(r, 0, f))
                    continue;
                Oid type = PQftype(r, f);
                int mod = PQfmod(r, f), len = PQgetlength(r, 0, f);
                const char *v = PQgetvalue(r, 0, f);
                o.check += binary ? binary_value(type, v, len, mod) : text_value(type, v, len, mod);
            }
            o.rows++;
        } else if (st != PGRES_TUPLES_OK) {
            fprintf(stderr, "formats: %s", PQresultErrorMessage(r));
            o.ok = 0;
        }
        PQclear(r);
    }
    o.wall = now() - t0;
    double s1 = proc_cpu(backend);
    o.server_cpu = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
    PQfinish(c);
    return o;
}

/* In a fresh child; the child's CPU from wait4. */
static outcome measure(const char *dsn, const char *sql, int binary)
{
    int fd[2];
    outcome o = {0};
    if (pipe(fd) != 0)
        return o;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        o = run_one(dsn, sql, binary);
        if (write(fd[1], &o, sizeof o) != (ssize_t)sizeof o)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    struct rusage ru;
    int status;
    ssize_t n = read(fd[0], &o, sizeof o);
    close(fd[0]);
    wait4(pid, &status, 0, &ru);
    if (n != (ssize_t)sizeof o || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        o.ok = 0;
    o.client_cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    return o;
}

int main(int argc, char **argv)
{
    int runs = 3, a = 1;
    if (argc > 2 && strcmp(argv[1], "--runs") == 0) {
        runs = atoi(argv[2]);
        a = 3;
    }
    if (a >= argc) {
        fprintf(stderr, "usage: formats [--runs N] DSN [NAME=SQL ...]\n");
        return 2;
    }
    const char *dsn = argv[a++];
    static const char *defaults[] = {"int4=SELECT i4 FROM bench_typed",
                                     "int8=SELECT i8 FROM bench_typed",
                                     "float8=SELECT f8 FROM bench_typed",
                                     "numeric(14,4)=SELECT num FROM bench_typed",
                                     "text=SELECT txt FROM bench_typed",
                                     "bool=SELECT flag FROM bench_typed",
                                     "timestamptz=SELECT ts FROM bench_typed",
                                     "uuid=SELECT id FROM bench_typed",
                                     "date=SELECT day FROM bench_typed",
                                     "jsonb=SELECT data FROM bench_json",
                                     "all typed columns=SELECT * FROM bench_typed"};
    const char **q = a < argc ? (const char **)argv + a : defaults;
    int nq = a < argc ? argc - a : (int)(sizeof defaults / sizeof defaults[0]);
    printf("| values | rows | text: wall s | binary: wall s | text: client CPU s | binary: "
           "client CPU s | text: server CPU s | binary: server CPU s | same values |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    int status = 0;
    for (int i = 0; i < nq; i++) {
        const char *eq = strchr(q[i], '=');
        if (eq == NULL)
            return 2;
        outcome best[2];
        for (int f = 0; f < 2; f++)
            best[f] = (outcome){.wall = 1e9, .client_cpu = 1e9, .server_cpu = 1e9, .ok = 1};
        for (int r = 0; r < runs; r++)
            for (int f = 0; f < 2; f++) { /* interleaved */
                outcome o = measure(dsn, eq + 1, f);
                fprintf(stderr, "formats: %.*s %s run %d: %.2f s\n", (int)(eq - q[i]), q[i],
                        f ? "binary" : "text", r + 1, o.wall);
                if (!o.ok) {
                    best[f].ok = 0;
                    continue;
                }
                best[f].rows = o.rows;
                best[f].check = o.check;
                if (o.wall < best[f].wall)
                    best[f].wall = o.wall;
                if (o.client_cpu < best[f].client_cpu)
                    best[f].client_cpu = o.client_cpu;
                if (o.server_cpu >= 0 && o.server_cpu < best[f].server_cpu)
                    best[f].server_cpu = o.server_cpu;
            }
        int same = best[0].ok && best[1].ok && best[0].check == best[1].check &&
                   best[0].rows == best[1].rows;
        status |= !same;
        printf("| %.*s | %llu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", (int)(eq - q[i]),
               q[i], best[0].rows, best[0].wall, best[1].wall, best[0].client_cpu,
               best[1].client_cpu, best[0].server_cpu, best[1].server_cpu, same ? "yes" : "NO");
        fflush(stdout);
    }
    return status;
}
