/* test_random.c - randomized checksum test of the stream engine (issue 10).
 *
 * Every iteration draws a query shape (0 to 6 columns: integers, NULLs, empty
 * strings, multibyte UTF-8, wide values up to ~48 kB, json, floats) and a set
 * of options (chunk_rows, chunk_bytes, max_rows, max_memory with memory_warn
 * <= memory_fail, adaptive chunking with chunk_rows_min/max, a row filter),
 * a way to consume (blocking next, next_chunk, PGSPOUT_NONBLOCK next_chunk
 * polled on pgspout_stream_socket, or a random mix of the three) and maybe a
 * second thread that pauses and resumes the stream at random. It then checks:
 *
 *  - rows: the delivered rows, in order, hash to the server's own md5 of
 *    exactly the rows that must be delivered (the first max_rows of those the
 *    filter keeps), and their count is min(kept, max_rows);
 *  - state: DONE, or LIMITED when (and only when) the server had more rows
 *    than max_rows;
 *  - memory: peak_buffered_bytes <= max_memory * memory_fail; and the memory a
 *    chunk demonstrably occupies (see chunk_footprint) is within that bound
 *    and within peak_buffered_bytes (the accounting must count it). A stream
 *    may instead fail with PGSPOUT_EMEMORY only at a row that cannot fit on
 *    its own (its values alone, plus generous per-row overhead, are over the
 *    bound), after delivering exactly the rows before it;
 *  - stats.rows_delivered, the memory_warn log hook (at most once), and that
 *    the connection is reusable afterwards.
 *
 * A failing iteration does not stop the run: every failure is printed with
 * the seed, the iteration and its parameters, and counted by kind; the test
 * fails at the end.
 *
 * Knobs (environment):
 *   PGSPOUT_RANDOM_ITERATIONS=N  iterations (default 300, 40 under valgrind)
 *   PGSPOUT_RANDOM_SEED=S        master seed (default: from the clock; printed)
 *   PGSPOUT_RANDOM_ONLY=I        run only iteration I of seed S (a replay)
 *   PGSPOUT_RANDOM_VERBOSE=1     print every iteration's parameters
 * An iteration's parameters depend only on S and I, so
 *   PGSPOUT_RANDOM_SEED=S PGSPOUT_RANDOM_ONLY=I build/tests/test_random
 * replays it (thread timing aside). Row counts and widths are scaled down
 * under valgrind (tu_valgrind), so replay a valgrind failure under valgrind.
 *
 * A second test is a deterministic sweep of small max_rows x chunk_rows x
 * chunk_bytes x result size x consumption mode, through the same checks.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pgspout.h"
#include "testutil.h"

/* ------------------------------------------------------------------ rng */

/* splitmix64: small, good enough, and the same everywhere */
static uint64_t mix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* uniform in [lo, hi] */
static long rnd(uint64_t *s, long lo, long hi)
{
    return lo + (long)(mix64(s) % (uint64_t)(hi - lo + 1));
}

/* log-uniform in [lo, hi], lo >= 1 */
static long rnd_log(uint64_t *s, long lo, long hi)
{
    double u = (double)(mix64(s) >> 11) / 9007199254740992.0; /* [0, 1) */
    long v = (long)floor(exp(log((double)lo) + u * (log((double)hi + 1) - log((double)lo))));
    return v < lo ? lo : v > hi ? hi : v;
}

/* 1 with probability pct % */
static int chance(uint64_t *s, int pct) { return rnd(s, 0, 99) < pct; }

/* ----------------------------------------------------------- parameters */

enum { M_NEXT, M_CHUNK, M_NONBLOCK, M_MIXED };
static const char *const mode_names[] = {"next", "next_chunk", "nonblock", "mixed"};

#define MAX_COLS 6
#define MAX_OPTS 12

typedef struct params {
    uint64_t seed; /* master seed */
    long iter;     /* -1 in the sweep */
    long n;        /* generate_series(1, n) */
    int ncols;
    char col[MAX_COLS][256];    /* SQL expressions of g */
    int filter_mod, filter_res; /* keep g % mod <> res (col 0 is g); 0 = none */
    const char *okey[MAX_OPTS]; /* options, as set */
    char oval[MAX_OPTS][32];
    int nopts;
    long max_rows;       /* 0 = none */
    uint64_t fail_bytes; /* max_memory * memory_fail */
    int mode;
    int pauser; /* a thread pauses/resumes at random */
} params;

static void opt_add(params *p, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void opt_add(params *p, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    p->okey[p->nopts] = key;
    vsnprintf(p->oval[p->nopts], sizeof p->oval[0], fmt, ap);
    va_end(ap);
    p->nopts++;
}

/* The rows the filter keeps, as SQL over g. */
static void pred_sql(const params *p, char *out, size_t n)
{
    if (p->filter_mod)
        snprintf(out, n, "g %% %d <> %d", p->filter_mod, p->filter_res);
    else
        snprintf(out, n, "true");
}

static int keep_row(const pgspout_row *r, void *ud)
{
    const params *p = ud;
    long g = atol(pgspout_row_value(r, 0, NULL));
    return g % p->filter_mod != p->filter_res;
}

/* The stream's SQL. */
static void stream_sql(const params *p, tu_buf *b)
{
    char tmp[64];
    tu_buf_adds(b, "SELECT ");
    for (int c = 0; c < p->ncols; c++) {
        if (c)
            tu_buf_adds(b, ", ");
        tu_buf_adds(b, p->col[c]);
        snprintf(tmp, sizeof tmp, " AS c%d", c);
        tu_buf_adds(b, tmp);
    }
    snprintf(tmp, sizeof tmp, " FROM generate_series(1, %ld) g", p->n);
    tu_buf_adds(b, tmp);
}

/* One row as the client hashes it, in SQL: per column "N" for NULL, else
 * "v<bytes>:<value>"; columns joined by '|' (rows by '\n' in string_agg). */
static void rowtext_sql(const params *p, tu_buf *b)
{
    if (p->ncols == 0) {
        tu_buf_adds(b, "''");
        return;
    }
    for (int c = 0; c < p->ncols; c++) {
        if (c)
            tu_buf_adds(b, " || '|' || ");
        /* format('%s') renders with the type's output function, as the
         * stream receives it (bool::text would say "true", not "t") */
        tu_buf_adds(b, "CASE WHEN (");
        tu_buf_adds(b, p->col[c]);
        tu_buf_adds(b, ") IS NULL THEN 'N' ELSE 'v' || octet_length(format('%s', ");
        tu_buf_adds(b, p->col[c]);
        tu_buf_adds(b, ")) || ':' || format('%s', ");
        tu_buf_adds(b, p->col[c]);
        tu_buf_adds(b, ") END");
    }
}

/* An upper bound on what one row can need in a stream buffer: its values
 * with terminators, plus generous per-row and per-column overhead. A row
 * whose bound is within max_memory * memory_fail must never cause EMEMORY. */
static void rowmax_sql(const params *p, tu_buf *b)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "(%d", 64 + 16 * p->ncols);
    tu_buf_adds(b, tmp);
    for (int c = 0; c < p->ncols; c++) {
        tu_buf_adds(b, " + octet_length(format('%s', ");
        tu_buf_adds(b, p->col[c]);
        tu_buf_adds(b, ")) + 1");
    }
    tu_buf_adds(b, ")");
}

static void describe(const params *p, tu_buf *b)
{
    char tmp[256];
    if (p->iter >= 0)
        snprintf(tmp, sizeof tmp,
                 "  replay: PGSPOUT_RANDOM_SEED=%" PRIu64 " PGSPOUT_RANDOM_ONLY=%ld test_random\n",
                 p->seed, p->iter);
    else
        snprintf(tmp, sizeof tmp, "  (deterministic sweep)\n");
    tu_buf_adds(b, tmp);
    tu_buf_adds(b, "  sql: ");
    stream_sql(p, b);
    tu_buf_adds(b, "\n  options:");
    for (int i = 0; i < p->nopts; i++) {
        snprintf(tmp, sizeof tmp, " %s=%s", p->okey[i], p->oval[i]);
        tu_buf_adds(b, tmp);
    }
    if (p->filter_mod) {
        snprintf(tmp, sizeof tmp, " filter(keep g %% %d <> %d)", p->filter_mod, p->filter_res);
        tu_buf_adds(b, tmp);
    }
    snprintf(tmp, sizeof tmp, "\n  consume: %s%s\n", mode_names[p->mode],
             p->pauser ? " + pause/resume thread" : "");
    tu_buf_adds(b, tmp);
}

/* A random column expression of g. budget: bytes the wide columns may
 * produce over the whole result. */
static void random_column(uint64_t *r, const params *p, char *out, size_t n, long budget)
{
    switch (rnd(r, 0, 10)) {
    case 0: snprintf(out, n, "g"); break;
    case 1: {
        long m = rnd(r, 2, 6);
        snprintf(out, n,
                 "CASE WHEN g %% %ld = 0 THEN NULL WHEN g %% %ld = 1 THEN '' ELSE 'r' || g END", m,
                 m);
        break;
    }
    case 2:
        snprintf(out, n,
                 "CASE WHEN g %% %ld = 0 THEN NULL ELSE repeat('é€𝄞ж', (g * %ld) %% %ld) || g END",
                 rnd(r, 2, 9), rnd(r, 1, 7), rnd(r, 2, 40));
        break;
    case 3:
    case 4: {
        /* wide: every period-th row gets len bytes (ASCII or 2-byte UTF-8) */
        long len = rnd_log(r, 64, 48000);
        long rows = p->n > 0 ? p->n : 1;
        long period = (long)((double)rows * (double)len / (double)budget) + 1;
        period = rnd(r, period, period * 3);
        if (chance(r, 50))
            snprintf(
                out, n,
                "CASE WHEN g %% %ld = %ld THEN repeat(chr(33 + g %% 90), %ld) ELSE 'n' || (g %% "
                "10) END",
                period, rnd(r, 0, period - 1), len);
        else
            snprintf(out, n, "CASE WHEN g %% %ld = %ld THEN repeat('ü', %ld) ELSE '' END", period,
                     rnd(r, 0, period - 1), len / 2);
        break;
    }
    case 5: snprintf(out, n, "md5(g::text)"); break;
    case 6: snprintf(out, n, "NULL::text"); break;
    case 7: snprintf(out, n, "''::text"); break;
    case 8: snprintf(out, n, "jsonb_build_object('g', g, 's', repeat('ä\"', g %% 5))"); break;
    case 9: snprintf(out, n, "(g::float8 / %ld)", rnd(r, 1, 13)); break;
    default: snprintf(out, n, "(g %% %ld = 0)", rnd(r, 2, 4)); break;
    }
}

static const long chunk_bytes_picks[] = {1, 24, 40, 64, 100, 256, 1000, 4096, 65536, 1048576};

static void random_params(params *p, uint64_t seed, long iter)
{
    memset(p, 0, sizeof *p);
    p->seed = seed;
    p->iter = iter;
    uint64_t r = seed ^ (UINT64_C(0x5851f42d4c957f2d) * (uint64_t)(iter + 1));
    mix64(&r);
    long nmax = tu_scaled(6000, 300);
    int k = (int)rnd(&r, 0, 99);
    p->n = k < 10   ? rnd(&r, 0, 3)
           : k < 50 ? rnd(&r, 1, 50)
           : k < 90 ? rnd(&r, 50, nmax / 3)
                    : rnd(&r, nmax / 3, nmax);
    p->ncols = chance(&r, 10) ? 0 : (int)rnd(&r, 1, MAX_COLS);
    long budget = tu_scaled(3 << 20, 256 << 10);
    for (int c = 0; c < p->ncols; c++)
        random_column(&r, p, p->col[c], sizeof p->col[c], budget);
    if (p->ncols > 0 && chance(&r, 20)) {
        snprintf(p->col[0], sizeof p->col[0], "g");
        p->filter_mod = (int)rnd(&r, 2, 5);
        p->filter_res = (int)rnd(&r, 0, p->filter_mod - 1);
    }

    if (chance(&r, 80))
        opt_add(p, "chunk_rows", "%ld", rnd_log(&r, 1, 5000));
    if (chance(&r, 75))
        opt_add(p, "chunk_bytes", "%ld",
                chance(&r, 60) ? chunk_bytes_picks[rnd(&r, 0, 9)] : rnd_log(&r, 1, 2 << 20));
    if (chance(&r, 55)) {
        p->max_rows = chance(&r, 40) ? rnd(&r, 1, 10) : rnd(&r, 1, p->n + 10);
        opt_add(p, "max_rows", "%ld", p->max_rows);
    }
    long max_memory = 64L << 20;
    double fail = 1.0;
    if (p->ncols == 0 && chance(&r, 60)) {
        /* zero-column rows hold no values, only their row handles */
        max_memory = rnd_log(&r, 1024, 16 << 10);
        opt_add(p, "max_memory", "%ld", max_memory);
    } else if (chance(&r, 50)) {
        /* half of them tight: a few kB, where per-row overhead matters */
        max_memory = chance(&r, 50) ? rnd_log(&r, 1024, 64 << 10) : rnd_log(&r, 64 << 10, 8 << 20);
        opt_add(p, "max_memory", "%ld", max_memory);
    }
    if (chance(&r, 50)) {
        long f = rnd(&r, 30, 100), w = rnd(&r, 5, f);
        fail = (double)f / 100;
        opt_add(p, "memory_fail", "%ld.%02ld", f / 100, f % 100);
        opt_add(p, "memory_warn", "%ld.%02ld", w / 100, w % 100);
    } else if (chance(&r, 30)) {
        long w = rnd(&r, 5, 100);
        opt_add(p, "memory_warn", "%ld.%02ld", w / 100, w % 100);
    }
    p->fail_bytes = (uint64_t)((double)max_memory * fail);
    if (chance(&r, 25)) {
        long lo = rnd_log(&r, 1, 500), hi = rnd(&r, lo, lo * 50);
        opt_add(p, "adaptive_chunking", "on");
        opt_add(p, "chunk_rows_min", "%ld", lo);
        opt_add(p, "chunk_rows_max", "%ld", hi);
    }
    opt_add(p, "timeout", "%ds", tu_valgrind() ? 600 : 120); /* a hang becomes a failure */
    p->mode = (int)rnd(&r, 0, 3);
    p->pauser = chance(&r, 30);
}

/* -------------------------------------------------------- memory footprint */

typedef struct span {
    uintptr_t a, b; /* [a, b) */
} span;

typedef struct group {
    span *v;
    size_t nv, capv;
    uintptr_t *h;
    size_t nh, caph;
} group;

static void group_span(group *g, uintptr_t a, uintptr_t b)
{
    if (g->nv == g->capv) {
        g->capv = g->capv ? g->capv * 2 : 256;
        g->v = realloc(g->v, g->capv * sizeof *g->v);
        assert_non_null(g->v);
    }
    g->v[g->nv++] = (span){a, b};
}

static void group_row(group *g, const pgspout_row *row)
{
    if (g->nh == g->caph) {
        g->caph = g->caph ? g->caph * 2 : 256;
        g->h = realloc(g->h, g->caph * sizeof *g->h);
        assert_non_null(g->h);
    }
    g->h[g->nh++] = (uintptr_t)row;
    for (int c = 0; c < pgspout_row_ncols(row); c++) {
        size_t len;
        const char *v = pgspout_row_value(row, c, &len);
        /* a non-empty value is a NUL-terminated string of its own; an empty
         * one might be a shared "" */
        if (len > 0)
            group_span(g, (uintptr_t)v, (uintptr_t)v + len + 1);
    }
}

static int cmp_uptr(const void *x, const void *y)
{
    uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
    return a < b ? -1 : a > b;
}

static int cmp_span(const void *x, const void *y)
{
    const span *a = x, *b = y;
    return a->a < b->a ? -1 : a->a > b->a;
}

/* Bytes the rows of one chunk demonstrably occupy while the chunk is valid:
 * the union of their non-empty values (with terminators) and of their row
 * handles. When the handles sit at one constant stride d (an array) each
 * occupies d bytes; otherwise a handle counts as one pointer. A lower bound
 * of what the stream holds, whatever its layout. Resets g. */
static uint64_t chunk_footprint(group *g)
{
    uint64_t total = 0;
    if (g->nh > 0) {
        qsort(g->h, g->nh, sizeof *g->h, cmp_uptr);
        uintptr_t d = sizeof(void *);
        if (g->nh >= 2) {
            uintptr_t d0 = g->h[1] - g->h[0];
            int constant = d0 > 0 && d0 <= 256;
            for (size_t i = 2; constant && i < g->nh; i++)
                constant = g->h[i] - g->h[i - 1] == d0;
            if (constant)
                d = d0;
        }
        size_t nh = g->nh;
        for (size_t i = 0; i < nh; i++)
            group_span(g, g->h[i], g->h[i] + d);
    }
    if (g->nv > 0) {
        qsort(g->v, g->nv, sizeof *g->v, cmp_span);
        uintptr_t a = g->v[0].a, b = g->v[0].b;
        for (size_t i = 1; i < g->nv; i++) {
            if (g->v[i].a > b) {
                total += b - a;
                a = g->v[i].a;
                b = g->v[i].b;
            } else if (g->v[i].b > b) {
                b = g->v[i].b;
            }
        }
        total += b - a;
    }
    g->nv = g->nh = 0;
    return total;
}

static void group_free(group *g)
{
    free(g->v);
    free(g->h);
}

/* ----------------------------------------------------- pause/resume thread */

typedef struct pauser {
    pgspout_stream *s;
    uint64_t seed;
    atomic_int stop;
    int pauses;
    pthread_t th;
} pauser;

static void *pauser_main(void *arg)
{
    pauser *pz = arg;
    uint64_t r = pz->seed;
    while (!atomic_load(&pz->stop)) {
        tu_sleep_us(rnd(&r, 0, 1500));
        if (atomic_load(&pz->stop))
            break;
        if (pgspout_stream_pause(pz->s) == PGSPOUT_OK)
            pz->pauses++;
        tu_sleep_us(rnd(&r, 0, 1500));
        pgspout_stream_resume(pz->s);
    }
    return NULL;
}

/* ------------------------------------------------------------- log hook */

static atomic_int warn_logs;
static void log_hook(int level, const char *msg, void *ud)
{
    (void)ud;
    if (level == 2 && strstr(msg, "memory_warn"))
        atomic_fetch_add(&warn_logs, 1);
}

/* ------------------------------------------------------------ one run */

/* failure kinds, counted over the run */
enum {
    F_ROWS,     /* count or checksum */
    F_STATE,    /* DONE vs LIMITED, or the end code */
    F_MEMBOUND, /* over max_memory * memory_fail */
    F_MEMCOUNT, /* held more than peak_buffered_bytes says */
    F_EMEMORY,  /* EMEMORY though the row fits */
    F_ERROR,    /* open failed, other errors, hangs */
    F_STATS,    /* rows_delivered, memory_warn */
    F_CONN,     /* connection not reusable */
    F_NKINDS
};
static const char *const kind_names[] = {"rows (count/checksum)",
                                         "end state",
                                         "memory over max_memory*memory_fail",
                                         "memory held but not counted in peak_buffered_bytes",
                                         "EMEMORY for a row that fits",
                                         "errors",
                                         "stats/log",
                                         "connection reuse"};

typedef struct report {
    tu_buf msg;
    unsigned kinds;  /* bit per F_* */
    int state;       /* the stream's end state */
    int ememory;     /* ended with EMEMORY */
    int pauses;      /* by the pause thread */
    uint64_t rows;   /* delivered */
    int slow_cancel; /* the library closed the connection after a slow cancel */
} report;

static void flag(report *rp, int kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void flag(report *rp, int kind, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    rp->kinds |= 1u << kind;
    tu_buf_adds(&rp->msg, "  FAIL ");
    tu_buf_adds(&rp->msg, tmp);
    tu_buf_addc(&rp->msg, '\n');
}

typedef struct consumer {
    const params *p;
    pgspout_stream *s;
    report *rp;
    uint64_t rng;
    tu_md5 md5;
    uint64_t rows;
    long last_g;       /* column 0 of the last row when it is g (filter) */
    group grp;         /* rows of the current chunk */
    uint64_t chunk_no; /* stats.chunks the group belongs to */
    uint64_t max_fp;   /* largest chunk footprint */
    int fp_flagged;    /* 1: over the bound, 2: over the peak */
} consumer;

static void take_row(consumer *cs, const pgspout_row *row)
{
    if (cs->rows)
        tu_md5_update(&cs->md5, "\n", 1);
    int nc = pgspout_row_ncols(row);
    for (int c = 0; c < nc; c++) {
        if (c)
            tu_md5_update(&cs->md5, "|", 1);
        size_t len;
        const char *v = pgspout_row_value(row, c, &len);
        if (pgspout_row_isnull(row, c) == 1) {
            tu_md5_update(&cs->md5, "N", 1);
        } else {
            char pre[32];
            int k = snprintf(pre, sizeof pre, "v%zu:", len);
            tu_md5_update(&cs->md5, pre, (size_t)k);
            tu_md5_update(&cs->md5, v, len);
        }
    }
    if (cs->p->filter_mod)
        cs->last_g = atol(pgspout_row_value(row, 0, NULL));
    cs->rows++;
    group_row(&cs->grp, row);
}

/* Close the current chunk's group: check its footprint. */
static void end_group(consumer *cs)
{
    if (cs->grp.nh == 0)
        return;
    size_t nrows = cs->grp.nh;
    uint64_t fp = chunk_footprint(&cs->grp);
    if (fp > cs->max_fp)
        cs->max_fp = fp;
    pgspout_stats st = PGSPOUT_STATS_INIT;
    pgspout_stream_stats(cs->s, &st);
    /* each once per run */
    if (fp > cs->p->fail_bytes && !(cs->fp_flagged & 1)) {
        cs->fp_flagged |= 1;
        flag(cs->rp, F_MEMBOUND,
             "chunk %" PRIu64 " of %zu rows occupies at least %" PRIu64
             " bytes, over max_memory*memory_fail = %" PRIu64,
             cs->chunk_no, nrows, fp, cs->p->fail_bytes);
    }
    if (fp > st.peak_buffered_bytes && !(cs->fp_flagged & 2)) {
        cs->fp_flagged |= 2;
        flag(cs->rp, F_MEMCOUNT,
             "chunk %" PRIu64 " of %zu rows occupies at least %" PRIu64
             " bytes (values + row handles), but peak_buffered_bytes is %" PRIu64,
             cs->chunk_no, nrows, fp, st.peak_buffered_bytes);
    }
}

/* After a call that delivered rows: a new chunk starts a new group. */
static void note_chunk(consumer *cs)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    pgspout_stream_stats(cs->s, &st);
    if (st.chunks != cs->chunk_no) {
        end_group(cs);
        cs->chunk_no = st.chunks;
    }
}

/* Consume to the end; returns the final code. */
static int consume(consumer *cs)
{
    pgspout_stream *s = cs->s;
    double t_limit = tu_now() + tu_slack(120);
    int rc;
    for (;;) {
        int how = cs->p->mode == M_MIXED ? (int)rnd(&cs->rng, M_NEXT, M_NONBLOCK) : cs->p->mode;
        if (how == M_NEXT) {
            const pgspout_row *row;
            rc = pgspout_stream_next(s, &row);
            if (rc != PGSPOUT_OK)
                return rc;
            note_chunk(cs);
            take_row(cs, row);
            continue;
        }
        const pgspout_chunk *ch;
        rc = pgspout_stream_next_chunk(s, how == M_NONBLOCK ? PGSPOUT_NONBLOCK : 0, &ch);
        if (rc == PGSPOUT_AGAIN || rc == PGSPOUT_PAUSED) {
            if (how != M_NONBLOCK) {
                flag(cs->rp, F_ERROR, "blocking next_chunk returned %s", pgspout_code_name(rc));
                return rc;
            }
            int ms = pgspout_stream_wait_ms(s);
            int cap = (int)tu_slack(15000); /* a lost wake-up fails before the timeout */
            struct pollfd pfd = {pgspout_stream_socket(s), POLLIN, 0};
            int pr = poll(&pfd, 1, ms < 0 || ms > cap ? cap : ms);
            if (pr == 0 && (ms < 0 || ms > cap)) {
                flag(cs->rp, F_ERROR,
                     "%s, then pgspout_stream_socket stayed silent for %d ms (wait_ms %d)",
                     pgspout_code_name(rc), cap, ms);
                return PGSPOUT_EINTERNAL;
            }
            if (tu_now() > t_limit) {
                flag(cs->rp, F_ERROR, "no end after %.0f s", tu_slack(120));
                return PGSPOUT_EINTERNAL;
            }
            continue;
        }
        if (rc != PGSPOUT_OK)
            return rc;
        int k = pgspout_chunk_nrows(ch);
        if (k < 1) {
            flag(cs->rp, F_ERROR, "next_chunk gave a chunk of %d rows", k);
            return PGSPOUT_EINTERNAL;
        }
        note_chunk(cs);
        for (int i = 0; i < k; i++)
            take_row(cs, pgspout_chunk_row(ch, i));
    }
}

/* The server's answer to "SELECT concat_ws(' ', ...)": fields into out. */
static int server_fields(pgspout_conn *c, tu_buf *sql, char *out, size_t n)
{
    tu_buf_addc(sql, '\0');
    char *v = tu_try_scalar(c, sql->data, 0, NULL);
    if (!v)
        return -1;
    snprintf(out, n, "%s", v);
    free(v);
    return 0;
}

/* md5, count and last g of the first lim kept rows (lim < 0: all), and the
 * number of kept rows in the whole result. */
static int server_expect(pgspout_conn *c, const params *p, long lim, char md5[33], uint64_t *count,
                         long *last_g, uint64_t *kept_all)
{
    char pred[64], tmp[512], res[256];
    pred_sql(p, pred, sizeof pred);
    tu_buf q = {0};
    tu_buf_adds(&q, "SELECT concat_ws(' ', coalesce(md5(string_agg(");
    rowtext_sql(p, &q);
    snprintf(tmp, sizeof tmp,
             ", E'\\n' ORDER BY g)), md5('')), count(*), coalesce(max(g), 0), (SELECT count(*) "
             "FROM generate_series(1, %ld) g WHERE %s)) FROM (SELECT g FROM generate_series(1, "
             "%ld) g WHERE %s ORDER BY g LIMIT ",
             p->n, pred, p->n, pred);
    tu_buf_adds(&q, tmp);
    if (lim < 0)
        snprintf(tmp, sizeof tmp, "ALL) t");
    else
        snprintf(tmp, sizeof tmp, "%ld) t", lim);
    tu_buf_adds(&q, tmp);
    int rc = server_fields(c, &q, res, sizeof res);
    tu_buf_free(&q);
    if (rc)
        return -1;
    unsigned long long cnt, all;
    if (sscanf(res, "%32s %llu %ld %llu", md5, &cnt, last_g, &all) != 4)
        return -1;
    *count = cnt;
    *kept_all = all;
    return 0;
}

/* After EMEMORY: the first row past the last delivered one that the stream
 * had to take (kept by the filter, or too big to even be filtered). */
static int server_next_row(pgspout_conn *c, const params *p, long after, long *g, uint64_t *rowmax,
                           int *kept)
{
    char pred[64], tmp[512], res[256];
    pred_sql(p, pred, sizeof pred);
    tu_buf q = {0};
    tu_buf_adds(&q, "SELECT concat_ws(' ', g, ");
    rowmax_sql(p, &q);
    snprintf(tmp, sizeof tmp,
             ", (%s)::int) FROM generate_series(1, %ld) g WHERE g > %ld AND ((%s) OR ", pred, p->n,
             after, pred);
    tu_buf_adds(&q, tmp);
    rowmax_sql(p, &q);
    snprintf(tmp, sizeof tmp, " > %" PRIu64 ") ORDER BY g LIMIT 1", p->fail_bytes);
    tu_buf_adds(&q, tmp);
    tu_buf_addc(&q, '\0');
    char *v = tu_try_scalar(c, q.data, 0, NULL);
    tu_buf_free(&q);
    if (!v) {
        *g = -1; /* no such row */
        return 0;
    }
    snprintf(res, sizeof res, "%s", v);
    free(v);
    unsigned long long rm;
    if (sscanf(res, "%ld %llu %d", g, &rm, kept) != 3)
        return -1;
    *rowmax = rm;
    return 0;
}

/* Run one parameter set on *cp (reconnecting when it broke); failures go to
 * rp. */
static void run_params(pgspout_conn **cp, const params *p, report *rp)
{
    pgspout_options *o = pgspout_options_new();
    assert_non_null(o);
    for (int i = 0; i < p->nopts; i++) {
        int rc = pgspout_options_set(o, p->okey[i], p->oval[i]);
        if (rc != PGSPOUT_OK)
            fail_msg("options_set(%s, %s) = %s: %s", p->okey[i], p->oval[i], pgspout_code_name(rc),
                     pgspout_options_error(o));
    }
    if (p->filter_mod)
        pgspout_options_set_filter(o, keep_row, (void *)p);
    tu_buf sql = {0};
    stream_sql(p, &sql);
    tu_buf_addc(&sql, '\0');

    atomic_store(&warn_logs, 0);
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(*cp, sql.data, 0, NULL, o, &s);
    consumer cs = {.p = p, .s = s, .rp = rp, .rng = p->seed ^ (uint64_t)p->iter ^ 0xc0ffee};
    tu_md5_init(&cs.md5);
    pauser pz = {.s = s, .seed = cs.rng ^ 0x9e37};
    atomic_init(&pz.stop, 0);
    if (rc == PGSPOUT_OK) {
        if (p->pauser && pthread_create(&pz.th, NULL, pauser_main, &pz) != 0)
            fail_msg("pthread_create failed");
        rc = consume(&cs);
        if (p->pauser) {
            atomic_store(&pz.stop, 1);
            pthread_join(pz.th, NULL);
        }
        end_group(&cs);
    } else if (s == NULL) {
        flag(rp, F_ERROR, "open: %s: %s", pgspout_code_name(rc), pgspout_conn_error(*cp));
    }
    int state = s ? pgspout_stream_state(s) : -1;
    pgspout_stats st = PGSPOUT_STATS_INIT;
    if (s)
        pgspout_stream_stats(s, &st);
    const char *err = s ? pgspout_stream_error(s) : "";

    /* Ending early (max_rows, EMEMORY) cancels the query. A cancel the
     * server takes longer than 500 ms to accept (a loaded machine: it forks
     * a backend for it) makes the library close the connection, as
     * pgspout_stream_cancel documents: not a failure; check on a new one. */
    if (s && !pgspout_conn_ok(*cp) &&
        strstr(pgspout_conn_error(*cp), "did not take a cancel request")) {
        rp->slow_cancel = 1;
        print_message("note: %s; reconnecting\n", pgspout_conn_error(*cp));
        pgspout_conn_close(*cp);
        *cp = tu_connect();
    }

    /* what the server says must have been delivered */
    int ememory = rc == PGSPOUT_EMEMORY;
    long lim = ememory ? (long)cs.rows : p->max_rows ? p->max_rows : -1;
    char want_md5[33], got_md5[33];
    uint64_t want_rows = 0, kept_all = 0;
    long last_kept_g = 0;
    tu_md5_hex(&cs.md5, got_md5);
    if (s && rc != PGSPOUT_DONE && !ememory) {
        flag(rp, F_ERROR, "stream ended with %s (state %s): %s", pgspout_code_name(rc),
             pgspout_state_name(state), err);
    } else if (s &&
               server_expect(*cp, p, lim, want_md5, &want_rows, &last_kept_g, &kept_all) != 0) {
        flag(rp, F_ERROR, "the checksum query failed: %s", pgspout_conn_error(*cp));
    } else if (s) {
        uint64_t lim_rows =
            p->max_rows && (uint64_t)p->max_rows < kept_all ? (uint64_t)p->max_rows : kept_all;
        if (cs.rows != want_rows || strcmp(got_md5, want_md5) != 0)
            flag(rp, F_ROWS,
                 "delivered %" PRIu64 " rows (md5 %s), the server's first %" PRIu64
                 " rows hash to %s%s",
                 cs.rows, got_md5, want_rows, want_md5,
                 cs.rows == want_rows ? " (same count, different rows)" : "");
        if (!ememory) {
            if (want_rows != lim_rows)
                flag(rp, F_ROWS, "internal: want %" PRIu64 " rows, min(n, max_rows) %" PRIu64,
                     want_rows, lim_rows);
            /* LIMITED only when there was more: more kept rows, or (either
             * way) rows the filter would have dropped after the last one */
            int more = p->max_rows && kept_all > (uint64_t)p->max_rows;
            int maybe = p->max_rows && kept_all == (uint64_t)p->max_rows && last_kept_g < p->n;
            /* after a slow cancel the library could not learn whether more
             * rows followed the last one */
            maybe |= rp->slow_cancel && p->max_rows && kept_all == (uint64_t)p->max_rows;
            int want_state = more ? PGSPOUT_STATE_LIMITED : PGSPOUT_STATE_DONE;
            if (state != want_state && !(maybe && state == PGSPOUT_STATE_LIMITED))
                flag(rp, F_STATE,
                     "state %s, want %s (%" PRIu64 " rows to deliver of %" PRIu64
                     " kept, max_rows %ld)",
                     pgspout_state_name(state), pgspout_state_name(want_state), lim_rows, kept_all,
                     p->max_rows);
        } else {
            /* EMEMORY: only at a row that cannot fit on its own */
            long after = p->filter_mod ? (cs.rows ? cs.last_g : 0) : (long)cs.rows;
            long g = -1;
            uint64_t rowmax = 0;
            int kept = 0;
            if (state != PGSPOUT_STATE_FAILED)
                flag(rp, F_STATE, "EMEMORY with state %s", pgspout_state_name(state));
            if (p->max_rows && cs.rows >= (uint64_t)p->max_rows)
                flag(rp, F_EMEMORY, "EMEMORY after max_rows (%ld) rows were delivered",
                     p->max_rows);
            else if (server_next_row(*cp, p, after, &g, &rowmax, &kept) != 0)
                flag(rp, F_ERROR, "the row-size query failed: %s", pgspout_conn_error(*cp));
            else if (g < 0)
                flag(rp, F_EMEMORY, "EMEMORY after %" PRIu64 " rows, but no row follows: %s",
                     cs.rows, err);
            else if (rowmax <= p->fail_bytes)
                flag(rp, F_EMEMORY,
                     "EMEMORY at row %ld (needs at most %" PRIu64
                     " bytes) with max_memory*memory_fail %" PRIu64 ": %s",
                     g, rowmax, p->fail_bytes, err);
        }
    }
    if (s) {
        if (st.peak_buffered_bytes > p->fail_bytes)
            flag(rp, F_MEMBOUND,
                 "peak_buffered_bytes %" PRIu64 " > max_memory*memory_fail %" PRIu64,
                 st.peak_buffered_bytes, p->fail_bytes);
        if (st.rows_delivered != cs.rows)
            flag(rp, F_STATS, "stats.rows_delivered %" PRIu64 ", the caller got %" PRIu64,
                 st.rows_delivered, cs.rows);
        if (atomic_load(&warn_logs) > 1)
            flag(rp, F_STATS, "memory_warn logged %d times", atomic_load(&warn_logs));
    }
    rp->state = state;
    rp->ememory = ememory;
    rp->pauses = pz.pauses;
    rp->rows = cs.rows;
    pgspout_stream_close(s);
    group_free(&cs.grp);
    tu_buf_free(&sql);
    pgspout_options_free(o);

    /* the connection goes on to the next iteration */
    char *one = pgspout_conn_ok(*cp) ? tu_try_scalar(*cp, "SELECT 1", 0, NULL) : NULL;
    if (!one || strcmp(one, "1") != 0) {
        flag(rp, F_CONN, "connection not reusable afterwards: %s", pgspout_conn_error(*cp));
        pgspout_conn_close(*cp);
        *cp = tu_connect();
    }
    free(one);
}

/* --------------------------------------------------------------- driver */

typedef struct tally {
    long runs, failed;
    long by_kind[F_NKINDS];
    int printed;
    long done, limited, ememory, pauses, slow_cancels; /* coverage */
    uint64_t rows;
} tally;

static void record(tally *t, const params *p, report *rp, const char *what)
{
    t->runs++;
    t->done += rp->state == PGSPOUT_STATE_DONE;
    t->limited += rp->state == PGSPOUT_STATE_LIMITED;
    t->ememory += rp->ememory;
    t->pauses += rp->pauses;
    t->slow_cancels += rp->slow_cancel;
    t->rows += rp->rows;
    if (!rp->kinds)
        return;
    t->failed++;
    for (int k = 0; k < F_NKINDS; k++)
        if (rp->kinds & (1u << k))
            t->by_kind[k]++;
    if (t->printed++ < 40) {
        tu_buf d = {0};
        describe(p, &d);
        tu_buf_addc(&d, '\0');
        tu_buf_addc(&rp->msg, '\0');
        print_error("%s failed:\n%s%s", what, d.data, rp->msg.data);
        tu_buf_free(&d);
    } else { /* past 40: one line each */
        tu_buf d = {0};
        char tmp[160];
        snprintf(tmp, sizeof tmp, "n=%ld cols=%d %s%s", p->n, p->ncols, mode_names[p->mode],
                 p->pauser ? "+pauser" : "");
        tu_buf_adds(&d, tmp);
        for (int i = 0; i < p->nopts; i++) {
            snprintf(tmp, sizeof tmp, " %s=%s", p->okey[i], p->oval[i]);
            tu_buf_adds(&d, tmp);
        }
        if (p->filter_mod) {
            snprintf(tmp, sizeof tmp, " filter(g %% %d <> %d)", p->filter_mod, p->filter_res);
            tu_buf_adds(&d, tmp);
        }
        snprintf(tmp, sizeof tmp, " -> %" PRIu64 " rows, %s%s:", rp->rows,
                 pgspout_state_name(rp->state), rp->ememory ? " (EMEMORY)" : "");
        tu_buf_adds(&d, tmp);
        for (int k = 0; k < F_NKINDS; k++)
            if (rp->kinds & (1u << k)) {
                tu_buf_adds(&d, " [");
                tu_buf_adds(&d, kind_names[k]);
                tu_buf_adds(&d, "]");
            }
        tu_buf_addc(&d, '\0');
        print_error("%s failed: %s\n", what, d.data);
        tu_buf_free(&d);
    }
}

static void conclude(const tally *t, const char *what, const char *replay)
{
    if (!t->failed)
        return;
    char kinds[1024] = ""; /* on the stack: fail_msg does not return */
    size_t len = 0;
    for (int k = 0; k < F_NKINDS; k++)
        if (t->by_kind[k] && len < sizeof kinds)
            len += (size_t)snprintf(kinds + len, sizeof kinds - len, "\n  %ld: %s", t->by_kind[k],
                                    kind_names[k]);
    fail_msg("%s: %ld of %ld runs failed (%s); by kind:%s", what, t->failed, t->runs, replay,
             kinds);
}

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static void test_random_streams(void **state)
{
    (void)state;
    uint64_t seed;
    const char *se = getenv("PGSPOUT_RANDOM_SEED");
    if (se && *se) {
        seed = strtoull(se, NULL, 0);
    } else {
        uint64_t t = (uint64_t)(tu_now() * 1e9) ^ ((uint64_t)getpid() << 32);
        seed = mix64(&t) % 1000000000000ULL;
    }
    long iters = env_long("PGSPOUT_RANDOM_ITERATIONS", tu_scaled(300, 40));
    long only = env_long("PGSPOUT_RANDOM_ONLY", -1);
    int verbose = env_long("PGSPOUT_RANDOM_VERBOSE", 0) != 0;
    print_message("seed %" PRIu64 ", %ld iterations (replay: PGSPOUT_RANDOM_SEED=%" PRIu64 ")\n",
                  seed, only >= 0 ? 1 : iters, seed);
    pgspout_set_log_hook(log_hook, NULL);
    pgspout_conn *c = tu_connect();
    tally t = {0};
    double t0 = tu_now();
    for (long i = only >= 0 ? only : 0; i < (only >= 0 ? only + 1 : iters); i++) {
        params p;
        random_params(&p, seed, i);
        report rp = {0};
        if (verbose) {
            tu_buf d = {0};
            describe(&p, &d);
            tu_buf_addc(&d, '\0');
            print_message("iteration %ld:\n%s", i, d.data);
            tu_buf_free(&d);
        }
        run_params(&c, &p, &rp);
        char what[96];
        snprintf(what, sizeof what, "seed %" PRIu64 " iteration %ld", seed, i);
        record(&t, &p, &rp, what);
        tu_buf_free(&rp.msg);
    }
    pgspout_set_log_hook(NULL, NULL);
    pgspout_conn_close(c);
    print_message("%ld iterations in %.1f s, %ld failed; ended done %ld, limited %ld, EMEMORY "
                  "%ld; %" PRIu64 " rows, %ld pauses from the other thread, %ld slow cancels\n",
                  t.runs, tu_now() - t0, t.failed, t.done, t.limited, t.ememory, t.rows, t.pauses,
                  t.slow_cancels);
    char replay[96];
    snprintf(replay, sizeof replay, "seed %" PRIu64 ": PGSPOUT_RANDOM_SEED=%" PRIu64, seed, seed);
    conclude(&t, "random streams", replay);
}

/* Every small max_rows x chunk_rows x chunk_bytes, over a result that is
 * longer than max_rows and one that is exactly as long, with narrow and
 * wider rows, consumed each way (next, next_chunk, NONBLOCK next_chunk):
 * where a row reaching the limit may have been carried over from the
 * previous chunk. */
static void test_max_rows_sweep(void **state)
{
    (void)state;
    static const long bytes[] = {24, 40, 64, 1048576};
    pgspout_conn *c = tu_connect();
    tally t = {0};
    for (long mr = 1; mr <= 5; mr++)
        for (long cr = 1; cr <= 4; cr++)
            for (int b = 0; b < 4; b++)
                for (int longer = 0; longer < 2; longer++)
                    for (int wide = 0; wide < 2; wide++)
                        for (int mode = M_NEXT; mode <= M_NONBLOCK; mode++) {
                            /* under valgrind each combination one way (rotating) */
                            if (tu_valgrind() && mode != (mr + cr + b + longer + wide) % 3)
                                continue;
                            params p;
                            memset(&p, 0, sizeof p);
                            p.iter = -1;
                            p.n = longer ? 10 : mr;
                            /* rows of ~16 and ~56 buffered bytes: 24, 40 and 64
                             * close chunks after 1 to 3 of them */
                            p.ncols = wide ? 2 : 1;
                            snprintf(p.col[0], sizeof p.col[0], "g");
                            snprintf(p.col[1], sizeof p.col[1], "md5(g::text)");
                            opt_add(&p, "chunk_rows", "%ld", cr);
                            opt_add(&p, "chunk_bytes", "%ld", bytes[b]);
                            opt_add(&p, "max_rows", "%ld", mr);
                            opt_add(&p, "timeout", "%ds", tu_valgrind() ? 600 : 60);
                            p.max_rows = mr;
                            p.fail_bytes = 64u << 20;
                            p.mode = mode;
                            report rp = {0};
                            run_params(&c, &p, &rp);
                            record(&t, &p, &rp, "sweep");
                            tu_buf_free(&rp.msg);
                        }
    pgspout_conn_close(c);
    print_message("sweep: %ld runs, %ld failed\n", t.runs, t.failed);
    conclude(&t, "max_rows sweep", "deterministic");
}

int main(void)
{
    int gate = tu_db_gate("test_random");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_rows_sweep),
        cmocka_unit_test(test_random_streams),
    };
    return cmocka_run_group_tests_name("random", tests, NULL, NULL);
}
