/* relutil.c - helpers for the reliability suites. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relutil.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define REL_HAVE_VALGRIND_H 1
#endif
#endif

#ifndef PGSPOUT_SOURCE_DIR
#error "PGSPOUT_SOURCE_DIR must be defined (the repository root)"
#endif

/* ------------------------------------------------------------- gate */

const char *rel_dsn(void)
{
    const char *d = getenv("PGSPOUT_TEST_DSN");
    return d && *d ? d : NULL;
}

int rel_db_gate(const char *suite)
{
    if (rel_dsn())
        return -1;
    const char *req = getenv("PGSPOUT_REQUIRE_DB");
    if (req && strcmp(req, "1") == 0) {
        fprintf(stderr, "%s: FAIL: PGSPOUT_TEST_DSN is not set and PGSPOUT_REQUIRE_DB=1\n", suite);
        return 1;
    }
    printf("%s: SKIPPED: PGSPOUT_TEST_DSN is not set (start a server with "
           "eval \"$(scripts/pg-throwaway.sh start DIR)\")\n",
           suite);
    return REL_SKIP;
}

void rel_filters(void)
{
    const char *run = getenv("REL_TEST_FILTER"), *skip = getenv("REL_SKIP_FILTER");
    if (run && *run)
        cmocka_set_test_filter(run);
    if (skip && *skip)
        cmocka_set_skip_filter(skip);
}

/* ---------------------------------------------------------- time */

double rel_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void rel_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void rel_sleep_ms(int ms) { rel_sleep_us((long)ms * 1000); }

static char watchdog_what[256];

static void watchdog_fire(int sig)
{
    (void)sig;
    static const char pre[] = "\nWATCHDOG: no progress (deadlock or hang) in: ";
    ssize_t r = write(2, pre, sizeof pre - 1);
    r = write(2, watchdog_what, strlen(watchdog_what));
    r = write(2, "\n", 1);
    (void)r;
    _exit(1);
}

void rel_watchdog(int seconds, const char *what)
{
    static int installed;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = watchdog_fire;
        sigaction(SIGALRM, &sa, NULL);
        installed = 1;
    }
    alarm(0);
    snprintf(watchdog_what, sizeof watchdog_what, "%s", what ? what : "?");
    if (seconds > 0)
        alarm((unsigned)rel_slack(seconds));
}

/* ------------------------------------------------------- valgrind */

int rel_valgrind(void)
{
#ifdef REL_HAVE_VALGRIND_H
    /* exact, and not fooled by the variable inherited by a child that runs
     * natively (valgrind --trace-children=no) */
    return RUNNING_ON_VALGRIND ? 1 : 0;
#else
    const char *e = getenv("PGSPOUT_UNDER_VALGRIND");
    return e && strcmp(e, "1") == 0;
#endif
}

long rel_scaled(long native, long under_valgrind)
{
    return rel_valgrind() ? under_valgrind : native;
}

double rel_slack(double s) { return rel_valgrind() ? s * REL_VALGRIND_SLACK : s; }

/* ----------------------------------------------------------- md5 */
/* RFC 1321. Constant tables so that it is thread-safe without setup. */

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
static const unsigned R[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                               5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                               4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                               6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(rel_md5 *m, const unsigned char *p)
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 | (uint32_t)p[i * 4 + 2] << 16 |
               (uint32_t)p[i * 4 + 3] << 24;
    uint32_t a = m->a, b = m->b, c = m->c, d = m->d;
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16)
            f = (b & c) | (~b & d), g = i;
        else if (i < 32)
            f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
        else if (i < 48)
            f = b ^ c ^ d, g = (3 * i + 5) % 16;
        else
            f = c ^ (b | ~d), g = (7 * i) % 16;
        uint32_t t = d;
        d = c;
        c = b;
        uint32_t x = a + f + K[i] + w[g];
        b = b + ((x << R[i]) | (x >> (32 - R[i])));
        a = t;
    }
    m->a += a, m->b += b, m->c += c, m->d += d;
}

void rel_md5_init(rel_md5 *m)
{
    m->a = 0x67452301, m->b = 0xefcdab89, m->c = 0x98badcfe, m->d = 0x10325476;
    m->len = 0;
}

void rel_md5_update(rel_md5 *m, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t have = (size_t)(m->len % 64);
    m->len += n;
    if (have) {
        size_t take = 64 - have < n ? 64 - have : n;
        memcpy(m->buf + have, p, take);
        p += take, n -= take, have += take;
        if (have < 64)
            return;
        md5_block(m, m->buf);
    }
    for (; n >= 64; p += 64, n -= 64)
        md5_block(m, p);
    memcpy(m->buf, p, n);
}

void rel_md5_hex(rel_md5 *m, char out[33])
{
    uint64_t bits = m->len * 8;
    unsigned char pad[72] = {0x80};
    size_t have = (size_t)(m->len % 64);
    size_t padlen = have < 56 ? 56 - have : 120 - have;
    rel_md5_update(m, pad, padlen);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(bits >> (8 * i));
    rel_md5_update(m, lenb, 8);
    uint32_t v[4] = {m->a, m->b, m->c, m->d};
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        unsigned char byte = (unsigned char)(v[i / 4] >> (8 * (i % 4)));
        out[i * 2] = hex[byte >> 4];
        out[i * 2 + 1] = hex[byte & 15];
    }
    out[32] = '\0';
}

/* --------------------------------------------------------- streams */

int rel_connect(const char *dsn, pgspout_conn **out) { return pgspout_connect(dsn, out); }

void rel_series_sql(char *buf, size_t n, long rows)
{
    snprintf(buf, n, "SELECT i, md5(i::text) FROM generate_series(1,%ld) i", rows);
}

void rel_series_md5_sql(char *buf, size_t n, long rows)
{
    snprintf(buf, n,
             "SELECT md5(string_agg(i::text || ',' || md5(i::text), E'\\n' ORDER BY i)) "
             "FROM generate_series(1,%ld) i",
             rows);
}

int rel_drain_md5(pgspout_stream *s, uint64_t *rows, char hex[33])
{
    rel_md5 m;
    rel_md5_init(&m);
    uint64_t n = 0;
    const pgspout_row *r;
    int rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        if (n++)
            rel_md5_update(&m, "\n", 1);
        int nc = pgspout_row_ncols(r);
        for (int c = 0; c < nc; c++) {
            size_t len;
            const char *v = pgspout_row_value(r, c, &len);
            if (c)
                rel_md5_update(&m, ",", 1);
            rel_md5_update(&m, v, len);
        }
    }
    if (rows)
        *rows = n;
    if (hex)
        rel_md5_hex(&m, hex);
    return rc;
}

int rel_stream_md5(pgspout_conn *c, const char *sql, const pgspout_options *o, uint64_t *rows,
                   char hex[33], char *err, size_t errlen)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
    if (rc != PGSPOUT_OK) {
        if (err)
            snprintf(err, errlen, "open: %s: %s", pgspout_code_name(rc),
                     s ? pgspout_stream_error(s) : pgspout_conn_error(c));
        pgspout_stream_close(s);
        return rc;
    }
    rc = rel_drain_md5(s, rows, hex);
    if (err)
        snprintf(err, errlen, "next: %s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
    pgspout_stream_close(s);
    return rc;
}

char *rel_scalar(pgspout_conn *c, const char *sql, int nparams, const char *const *params)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, nparams, params, NULL, &s);
    char *out = NULL;
    if (rc == PGSPOUT_OK) {
        const pgspout_row *r;
        while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
            if (out == NULL)
                out = strdup(pgspout_row_isnull(r, 0) == 1 ? "<NULL>"
                                                           : pgspout_row_value(r, 0, NULL));
        if (rc != PGSPOUT_DONE) {
            free(out);
            out = NULL;
        }
    }
    pgspout_stream_close(s);
    return out;
}

void rel_expect_scalar(pgspout_conn *c, const char *sql, const char *expected)
{
    assert_int_equal(pgspout_conn_ok(c), 1);
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("reuse: open(%s) = %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    const pgspout_row *r = NULL;
    rc = pgspout_stream_next(s, &r);
    if (rc != PGSPOUT_OK)
        fail_msg("reuse: next(%s) = %s: %s", sql, pgspout_code_name(rc), pgspout_stream_error(s));
    assert_string_equal(pgspout_row_value(r, 0, NULL), expected);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stream_close(s);
}

void rel_expect_series(pgspout_conn *c, long rows)
{
    char sql[256], msql[256], err[512], hex[33];
    rel_series_sql(sql, sizeof sql, rows);
    rel_series_md5_sql(msql, sizeof msql, rows);
    char *want = rel_scalar(c, msql, 0, NULL);
    if (want == NULL)
        fail_msg("server checksum failed on a connection that should work: %s",
                 pgspout_conn_error(c));
    uint64_t n = 0;
    int rc = rel_stream_md5(c, sql, NULL, &n, hex, err, sizeof err);
    if (rc != PGSPOUT_DONE)
        fail_msg("series(%ld): %s", rows, err);
    assert_int_equal(n, (uint64_t)rows);
    assert_string_equal(hex, want);
    free(want);
}

pgspout_options *rel_opts(const char *key, ...)
{
    pgspout_options *o = pgspout_options_new();
    assert_non_null(o);
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        int rc = pgspout_options_set(o, k, v);
        if (rc != PGSPOUT_OK)
            fail_msg("options_set(%s, %s) = %s: %s", k, v, pgspout_code_name(rc),
                     pgspout_options_error(o));
    }
    va_end(ap);
    return o;
}

/* ------------------------------------------------------ Prometheus */

static int labels_match(const char *labels, size_t n, const char *want)
{
    if (want == NULL || !*want)
        return 1;
    char one[256];
    const char *w = want;
    while (*w) {
        const char *comma = strchr(w, ',');
        size_t len = comma ? (size_t)(comma - w) : strlen(w);
        if (len >= sizeof one)
            return 0;
        memcpy(one, w, len);
        one[len] = '\0';
        /* match a whole k="v" item */
        int found = 0;
        for (size_t i = 0; i + len <= n; i++)
            if (memcmp(labels + i, one, len) == 0 && (i == 0 || labels[i - 1] == ',') &&
                (i + len == n || labels[i + len] == ','))
                found = 1;
        if (!found)
            return 0;
        w += len + (comma ? 1 : 0);
    }
    return 1;
}

int rel_prom_sum(const char *text, const char *name, const char *want, double *sum)
{
    int count = 0;
    size_t nl = strlen(name);
    *sum = 0;
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len && line[0] != '#' && len > nl && memcmp(line, name, nl) == 0 &&
            (line[nl] == ' ' || line[nl] == '{')) {
            const char *lab = "";
            size_t labn = 0;
            const char *p = line + nl;
            if (*p == '{') {
                const char *close = memchr(p, '}', len - nl);
                if (close == NULL)
                    return -1;
                lab = p + 1;
                labn = (size_t)(close - lab);
                p = close + 1;
            }
            if (*p != ' ')
                return -1;
            char *end;
            double v = strtod(p + 1, &end);
            if (end == p + 1)
                return -1;
            if (labels_match(lab, labn, want)) {
                *sum += v;
                count++;
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    return count;
}

/* ------------------------------------------------ separate servers */

int rel_sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fflush(NULL);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static const char *pg_bindir(void)
{
    static char dir[256];
    if (dir[0])
        return dir;
    FILE *p = popen("for d in /usr/lib/postgresql/*/bin; do [ -x \"$d/pg_ctl\" ] && b=$d; done; "
                    "echo \"$b\"",
                    "r");
    if (p) {
        if (fgets(dir, sizeof dir, p) == NULL)
            dir[0] = '\0';
        pclose(p);
        dir[strcspn(dir, "\n")] = '\0';
    }
    return dir;
}

static const char *as_server(void) { return geteuid() == 0 ? "runuser -u postgres -- " : ""; }

char *rel_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/pgspout-%s.XXXXXX", base && *base ? base : "/tmp", tag);
    if (mkdtemp(tmpl) == NULL)
        return NULL;
    chmod(tmpl, 0755); /* the server user must reach files below */
    return strdup(tmpl);
}

int rel_pg_start(const char *dir, const char *conf)
{
    if (conf)
        setenv("PGSPOUT_PG_CONF", conf, 1);
    else
        unsetenv("PGSPOUT_PG_CONF");
    int rc = rel_sh("'%s/scripts/pg-throwaway.sh' start '%s' >'%s.start.out' 2>&1",
                    PGSPOUT_SOURCE_DIR, dir, dir);
    unsetenv("PGSPOUT_PG_CONF");
    if (rc != 0) {
        rel_sh("cat '%s.start.out' >&2", dir);
        return -1;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/port", dir);
    FILE *f = fopen(path, "r");
    int port = -1;
    if (f) {
        if (fscanf(f, "%d", &port) != 1)
            port = -1;
        fclose(f);
    }
    return port;
}

int rel_pg_stop_immediate(const char *dir)
{
    return rel_sh("%s'%s/pg_ctl' -D '%s/data' -m immediate -w stop >/dev/null 2>&1", as_server(),
                  pg_bindir(), dir);
}

int rel_pg_restart(const char *dir)
{
    return rel_sh("%s'%s/pg_ctl' -D '%s/data' -l '%s/server.log' -w -t 60 start >/dev/null 2>&1",
                  as_server(), pg_bindir(), dir, dir);
}

void rel_pg_destroy(const char *dir)
{
    rel_sh("'%s/scripts/pg-throwaway.sh' stop '%s' >/dev/null 2>&1", PGSPOUT_SOURCE_DIR, dir);
    rel_sh("rm -f '%s.start.out'", dir);
}

int rel_contains(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}
