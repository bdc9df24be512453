/* testutil.c - helpers shared by the pgspout cmocka suites. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TU_HAVE_VALGRIND_H 1
#endif
#endif

/* Built with -fsanitize=thread (gcc defines __SANITIZE_THREAD__, clang has
 * __has_feature(thread_sanitizer)). */
#if defined(__SANITIZE_THREAD__)
#define TU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TU_TSAN 1
#endif
#endif

/* ------------------------------------------------------------- server */

const char *tu_dsn(void)
{
    const char *d = getenv("PGSPOUT_TEST_DSN");
    return (d && *d) ? d : NULL;
}

int tu_db_gate(const char *suite)
{
    if (tu_dsn())
        return -1;
    const char *req = getenv("PGSPOUT_REQUIRE_DB");
    if (req && strcmp(req, "1") == 0) {
        fprintf(stderr,
                "%s: FAIL: PGSPOUT_TEST_DSN is not set and PGSPOUT_REQUIRE_DB=1 "
                "(start a server: eval \"$(scripts/pg-throwaway.sh start DIR)\")\n",
                suite);
        return 1;
    }
    printf("%s: SKIPPED: PGSPOUT_TEST_DSN is not set (integration suite needs a "
           "PostgreSQL server; set PGSPOUT_REQUIRE_DB=1 to make this a failure)\n",
           suite);
    return TU_SKIP_CODE;
}

char *tu_dsn_with(const char *extra)
{
    const char *d = tu_dsn();
    assert_non_null(d);
    size_t n = strlen(d) + strlen(extra) + 2;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s %s", d, extra);
    return s;
}

pgspout_conn *tu_connect(void)
{
    pgspout_conn *c = NULL;
    int rc = pgspout_connect(tu_dsn(), &c);
    if (rc != PGSPOUT_OK)
        fail_msg("pgspout_connect(%s) = %d (%s): %s", tu_dsn(), rc, pgspout_code_name(rc),
                 c ? pgspout_conn_error(c) : "(no handle)");
    assert_non_null(c);
    assert_int_equal(pgspout_conn_ok(c), 1);
    return c;
}

/* The first value of sql's first row into *out (malloc'd, "<NULL>" for SQL
 * NULL, NULL when no rows); 0 when the stream ends in DONE, else -1 with the
 * failure in err and *out NULL. No cmocka: safe from any thread. */
static int scalar_run(pgspout_conn *c, const char *sql, int nparams, const char *const *params,
                      char **out, char *err, size_t errlen)
{
    pgspout_stream *s = NULL;
    *out = NULL;
    int rc = pgspout_stream_open(c, sql, nparams, params, NULL, &s);
    if (rc != PGSPOUT_OK) {
        snprintf(err, errlen, "open(%s) = %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
        pgspout_stream_close(s);
        return -1;
    }
    const pgspout_row *r = NULL;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        if (!*out) {
            if (pgspout_row_isnull(r, 0) == 1)
                *out = strdup("<NULL>");
            else
                *out = strdup(pgspout_row_value(r, 0, NULL));
        }
    }
    if (rc != PGSPOUT_DONE) {
        snprintf(err, errlen, "next(%s) = %s: %s", sql, pgspout_code_name(rc),
                 pgspout_stream_error(s));
        free(*out);
        *out = NULL;
    }
    pgspout_stream_close(s);
    return rc == PGSPOUT_DONE ? 0 : -1;
}

char *tu_scalar(pgspout_conn *c, const char *sql, int nparams, const char *const *params)
{
    char *out, err[8192];
    if (scalar_run(c, sql, nparams, params, &out, err, sizeof err))
        fail_msg("%s", err);
    return out;
}

long tu_scalar_long(pgspout_conn *c, const char *sql, int nparams, const char *const *params)
{
    char *v = tu_scalar(c, sql, nparams, params);
    assert_non_null(v);
    long n = atol(v);
    free(v);
    return n;
}

char *tu_try_scalar(pgspout_conn *c, const char *sql, int nparams, const char *const *params)
{
    char *out, err[8192];
    scalar_run(c, sql, nparams, params, &out, err, sizeof err);
    return out;
}

void tu_expect_scalar(pgspout_conn *c, const char *sql, const char *expected)
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
    rc = pgspout_stream_next(s, &r);
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stream_close(s);
}

pgspout_options *tu_opts(const char *key, ...)
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

/* ----------------------------------------------------------------- time */

double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tu_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void tu_sleep_ms(int ms) { tu_sleep_us((long)ms * 1000); }

/* ------------------------------------------------------------- valgrind */

int tu_valgrind(void)
{
#ifdef TU_HAVE_VALGRIND_H
    /* exact, and not fooled by the variable inherited by a child that runs
     * natively (valgrind --trace-children=no) */
    return RUNNING_ON_VALGRIND ? 1 : 0;
#else
    const char *e = getenv("PGSPOUT_UNDER_VALGRIND");
    return e && strcmp(e, "1") == 0;
#endif
}

int tu_tsan(void)
{
#ifdef TU_TSAN
    return 1;
#else
    const char *e = getenv("PGSPOUT_UNDER_TSAN");
    return e && strcmp(e, "1") == 0;
#endif
}

static int tu_slow_tool(void) { return tu_valgrind() || tu_tsan(); }

long tu_scaled(long native, long under_valgrind)
{
    return tu_slow_tool() ? under_valgrind : native;
}

double tu_slack(double s) { return tu_slow_tool() ? s * TU_VALGRIND_SLACK : s; }

/* ------------------------------------------------------------------ md5 */
/* RFC 1321, written from the specification. Constant tables (md5_k[i] is
 * floor(|sin(i + 1)| * 2^32)), so that it is thread-safe without setup. */

static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
static const unsigned md5_r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                   5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                   4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                   6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void md5_block(tu_md5 *m, const unsigned char *p)
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[i * 4] | (uint32_t)p[i * 4 + 1] << 8 | (uint32_t)p[i * 4 + 2] << 16 |
               (uint32_t)p[i * 4 + 3] << 24;
    uint32_t a = m->a, b = m->b, c = m->c, d = m->d;
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        uint32_t t = d;
        d = c;
        c = b;
        uint32_t x = a + f + md5_k[i] + w[g];
        b = b + ((x << md5_r[i]) | (x >> (32 - md5_r[i])));
        a = t;
    }
    m->a += a;
    m->b += b;
    m->c += c;
    m->d += d;
}

void tu_md5_init(tu_md5 *m)
{
    m->a = 0x67452301;
    m->b = 0xefcdab89;
    m->c = 0x98badcfe;
    m->d = 0x10325476;
    m->len = 0;
}

void tu_md5_update(tu_md5 *m, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t have = (size_t)(m->len % 64);
    m->len += n;
    if (have) {
        size_t take = 64 - have < n ? 64 - have : n;
        memcpy(m->buf + have, p, take);
        p += take;
        n -= take;
        if (have + take < 64)
            return;
        md5_block(m, m->buf);
    }
    while (n >= 64) {
        md5_block(m, p);
        p += 64;
        n -= 64;
    }
    memcpy(m->buf, p, n);
}

void tu_md5_hex(tu_md5 *m, char out[33])
{
    uint64_t bits = m->len * 8;
    unsigned char pad[72] = {0x80};
    size_t have = (size_t)(m->len % 64);
    size_t padlen = have < 56 ? 56 - have : 120 - have;
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)(bits >> (8 * i));
    tu_md5_update(m, pad, padlen);
    tu_md5_update(m, lenb, 8);
    uint32_t v[4] = {m->a, m->b, m->c, m->d};
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", (v[i / 4] >> (8 * (i % 4))) & 0xff);
}

void tu_md5_str(const char *s, size_t n, char out[33])
{
    tu_md5 m;
    tu_md5_init(&m);
    tu_md5_update(&m, s, n);
    tu_md5_hex(&m, out);
}

/* ------------------------------------------------------------ text buffer */

void tu_buf_add(tu_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            abort();
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}
void tu_buf_adds(tu_buf *b, const char *s) { tu_buf_add(b, s, strlen(s)); }
void tu_buf_addc(tu_buf *b, char c) { tu_buf_add(b, &c, 1); }
void tu_buf_free(tu_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ----------------------------------------------------------------- JSON */

typedef struct jp {
    const unsigned char *p, *end;
    tu_buf *out;
    int depth;
} jp;

static void jp_ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static void jp_emit(jp *j, const void *p, size_t n)
{
    if (j->out)
        tu_buf_add(j->out, p, n);
}

static void jp_emit_cp(jp *j, uint32_t cp)
{
    char u[8];
    size_t n;
    if (cp == '"' || cp == '\\') {
        u[0] = '\\';
        u[1] = (char)cp;
        n = 2;
    } else if (cp < 0x20) {
        snprintf(u, sizeof u, "\\u%04x", (unsigned)cp);
        n = 6;
    } else if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    jp_emit(j, u, n);
}

/* Decode one UTF-8 sequence strictly (no overlongs, no surrogates). */
static int utf8_next(const unsigned char **pp, const unsigned char *end, uint32_t *cp)
{
    const unsigned char *p = *pp;
    unsigned c = *p;
    int n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        *pp = p + 1;
        return 0;
    } else if ((c & 0xe0) == 0xc0) {
        n = 1;
        v = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 2;
        v = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 3;
        v = c & 0x07;
        min = 0x10000;
    } else
        return -1;
    if (end - p <= n)
        return -1;
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return -1;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return -1;
    *cp = v;
    *pp = p + n + 1;
    return 0;
}

static int hex4(const unsigned char *p, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

static int jp_string(jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    jp_emit(j, "\"", 1);
    for (;;) {
        if (j->p >= j->end)
            return -1;
        unsigned c = *j->p;
        if (c == '"') {
            j->p++;
            jp_emit(j, "\"", 1);
            return 0;
        }
        if (c < 0x20)
            return -1;
        uint32_t cp;
        if (c == '\\') {
            if (j->end - j->p < 2)
                return -1;
            unsigned e = j->p[1];
            j->p += 2;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = 8; break;
            case 'f': cp = 12; break;
            case 'n': cp = 10; break;
            case 'r': cp = 13; break;
            case 't': cp = 9; break;
            case 'u':
                if (j->end - j->p < 4 || hex4(j->p, &cp))
                    return -1;
                j->p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return -1; /* lone low surrogate */
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    uint32_t lo;
                    if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
                        hex4(j->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
                        return -1;
                    j->p += 6;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                break;
            default: return -1;
            }
        } else if (utf8_next(&j->p, j->end, &cp))
            return -1;
        jp_emit_cp(j, cp);
    }
}

static int jp_number(jp *j)
{
    const unsigned char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end)
        return -1;
    if (*j->p == '0')
        j->p++;
    else if (*j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && isdigit(*j->p))
            j->p++;
    else
        return -1;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !isdigit(*j->p))
            return -1;
        while (j->p < j->end && isdigit(*j->p))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || !isdigit(*j->p))
            return -1;
        while (j->p < j->end && isdigit(*j->p))
            j->p++;
    }
    jp_emit(j, s, (size_t)(j->p - s));
    return 0;
}

static int jp_lit(jp *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n))
        return -1;
    j->p += n;
    jp_emit(j, w, n);
    return 0;
}

static int jp_value(jp *j)
{
    if (++j->depth > 200)
        return -1;
    jp_ws(j);
    if (j->p >= j->end)
        return -1;
    int rc;
    switch (*j->p) {
    case '{':
        j->p++;
        jp_emit(j, "{", 1);
        jp_ws(j);
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            jp_emit(j, "}", 1);
            rc = 0;
            break;
        }
        for (;;) {
            jp_ws(j);
            if (jp_string(j))
                return -1;
            jp_ws(j);
            if (j->p >= j->end || *j->p != ':')
                return -1;
            j->p++;
            jp_emit(j, ":", 1);
            if (jp_value(j))
                return -1;
            jp_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                jp_emit(j, ",", 1);
                continue;
            }
            if (j->p < j->end && *j->p == '}') {
                j->p++;
                jp_emit(j, "}", 1);
                break;
            }
            return -1;
        }
        rc = 0;
        break;
    case '[':
        j->p++;
        jp_emit(j, "[", 1);
        jp_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            jp_emit(j, "]", 1);
            rc = 0;
            break;
        }
        for (;;) {
            if (jp_value(j))
                return -1;
            jp_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                jp_emit(j, ",", 1);
                continue;
            }
            if (j->p < j->end && *j->p == ']') {
                j->p++;
                jp_emit(j, "]", 1);
                break;
            }
            return -1;
        }
        rc = 0;
        break;
    case '"': rc = jp_string(j); break;
    case 't': rc = jp_lit(j, "true"); break;
    case 'f': rc = jp_lit(j, "false"); break;
    case 'n': rc = jp_lit(j, "null"); break;
    default: rc = jp_number(j);
    }
    j->depth--;
    return rc;
}

int tu_json_canon(const char *s, size_t n, tu_buf *out)
{
    jp j = {(const unsigned char *)s, (const unsigned char *)s + n, out, 0};
    if (!s)
        return -1;
    if (jp_value(&j))
        return -1;
    jp_ws(&j);
    return j.p == j.end ? 0 : -1;
}

int tu_json_valid(const char *s, size_t n) { return tu_json_canon(s, n, NULL) == 0; }

int tu_json_same(const char *a, size_t an, const char *b, size_t bn)
{
    tu_buf x = {0}, y = {0};
    int ok = tu_json_canon(a, an, &x) == 0 && tu_json_canon(b, bn, &y) == 0 && x.len == y.len &&
             (x.len == 0 || memcmp(x.data, y.data, x.len) == 0);
    if (!ok) {
        print_message("json differs:\n  %.*s\n  %.*s\n", (int)(an > 2000 ? 2000 : an), a ? a : "",
                      (int)(bn > 2000 ? 2000 : bn), b ? b : "");
    }
    tu_buf_free(&x);
    tu_buf_free(&y);
    return ok;
}

/* --------------------------------------------------------- Prometheus */

static int valid_metric_name(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (!(isalpha(c) || c == '_' || c == ':' || (i > 0 && isdigit(c))))
            return 0;
    }
    return 1;
}

static int valid_label_name(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (!(isalpha(c) || c == '_' || (i > 0 && isdigit(c))))
            return 0;
    }
    return 1;
}

static int parse_value(const char *s, double *v)
{
    if (!strcmp(s, "+Inf") || !strcmp(s, "Inf")) {
        *v = INFINITY;
        return 0;
    }
    if (!strcmp(s, "-Inf")) {
        *v = -INFINITY;
        return 0;
    }
    if (!strcmp(s, "NaN")) {
        *v = NAN;
        return 0;
    }
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (end == s || *end || errno)
        return -1;
    /* reject strtod's extras that Prometheus does not write */
    for (const char *p = s; *p; p++)
        if (!(isdigit((unsigned char)*p) || strchr("+-.eE", *p)))
            return -1;
    return 0;
}

/* Label pairs of a raw label text: checks syntax; calls fn per pair with the
 * unescaped value. Returns 0 or -1. */
typedef int (*label_fn)(const char *k, size_t kn, const char *v, void *ud);
static int labels_walk(const char *raw, label_fn fn, void *ud)
{
    const char *p = raw;
    char val[512];
    while (*p) {
        const char *k = p;
        while (*p && *p != '=')
            p++;
        if (*p != '=' || !valid_label_name(k, (size_t)(p - k)))
            return -1;
        size_t kn = (size_t)(p - k);
        p++;
        if (*p != '"')
            return -1;
        p++;
        size_t vn = 0;
        while (*p && *p != '"') {
            char c = *p++;
            if (c == '\\') {
                if (*p == 'n')
                    c = '\n';
                else if (*p == '\\' || *p == '"')
                    c = *p;
                else
                    return -1;
                p++;
            } else if (c == '\n')
                return -1;
            if (vn + 1 >= sizeof val)
                return -1;
            val[vn++] = c;
        }
        if (*p != '"')
            return -1;
        p++;
        val[vn] = 0;
        if (fn && fn(k, kn, val, ud))
            return -1;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return 0;
}

struct lbl_get {
    const char *key;
    char *out;
    size_t outn;
    int found;
};
static int lbl_get_fn(const char *k, size_t kn, const char *v, void *ud)
{
    struct lbl_get *g = ud;
    if (strlen(g->key) == kn && !memcmp(k, g->key, kn)) {
        snprintf(g->out, g->outn, "%s", v);
        g->found = 1;
    }
    return 0;
}
static int label_get(const char *raw, const char *key, char *out, size_t outn)
{
    struct lbl_get g = {key, out, outn, 0};
    if (labels_walk(raw, lbl_get_fn, &g))
        return -1;
    return g.found ? 0 : -1;
}

struct lbl_strip {
    tu_buf *b;
    const char *skip;
};
static int lbl_strip_fn(const char *k, size_t kn, const char *v, void *ud)
{
    struct lbl_strip *s = ud;
    if (strlen(s->skip) == kn && !memcmp(k, s->skip, kn))
        return 0;
    tu_buf_add(s->b, k, kn);
    tu_buf_addc(s->b, '=');
    tu_buf_adds(s->b, v);
    tu_buf_addc(s->b, '\x1f');
    return 0;
}
/* Canonical "k=v\x1f..." of raw without key skip (labels keep their order). */
static void labels_without(const char *raw, const char *skip, tu_buf *b)
{
    struct lbl_strip s = {b, skip};
    b->len = 0;
    tu_buf_add(b, "", 0);
    labels_walk(raw, lbl_strip_fn, &s);
}

static int ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

const tu_family *tu_expo_family(const tu_expo *e, const char *name)
{
    for (int i = 0; i < e->nf; i++)
        if (!strcmp(e->f[i].name, name))
            return &e->f[i];
    return NULL;
}

static tu_family *family_add(tu_expo *e, const char *name)
{
    tu_family *f = (tu_family *)tu_expo_family(e, name);
    if (f)
        return f;
    e->f = realloc(e->f, sizeof *e->f * (size_t)(e->nf + 1));
    f = &e->f[e->nf++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

/* The family a sample belongs to, given the TYPEs seen. */
static const tu_family *sample_family(const tu_expo *e, const char *name)
{
    const tu_family *f = tu_expo_family(e, name);
    if (f)
        return f;
    static const char *sufs[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        if (ends_with(name, sufs[i])) {
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(sufs[i])), name);
            f = tu_expo_family(e, base);
            if (f && (!strcmp(f->type, "histogram") || !strcmp(f->type, "summary")))
                return f;
        }
    }
    return NULL;
}

#define EXPO_FAIL(...)                                                                             \
    do {                                                                                           \
        snprintf(e->err, sizeof e->err, __VA_ARGS__);                                              \
        free(copy);                                                                                \
        return -1;                                                                                 \
    } while (0)

static int check_histograms(tu_expo *e);

int tu_expo_parse(const char *text, tu_expo *e)
{
    memset(e, 0, sizeof *e);
    char *copy = NULL;
    if (!text)
        EXPO_FAIL("no text");
    size_t tn = strlen(text);
    if (tn == 0 || text[tn - 1] != '\n')
        EXPO_FAIL("exposition must end with a newline");
    copy = strdup(text);
    int lineno = 0;
    char *save = NULL;
    /* families whose samples were seen, to check TYPE comes first and
     * families are not split */
    char last_family[128] = "";
    for (char *line = copy, *nl; line && *line; line = nl) {
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = 0;
        lineno++;
        (void)save;
        if (*line == 0)
            continue;
        if (*line == '#') {
            char kw[16], name[128];
            int off = 0;
            if (sscanf(line, "# %15s %127s %n", kw, name, &off) >= 2 &&
                (!strcmp(kw, "HELP") || !strcmp(kw, "TYPE"))) {
                if (!valid_metric_name(name, strlen(name)))
                    EXPO_FAIL("line %d: bad metric name in %s: %s", lineno, kw, name);
                tu_family *f = family_add(e, name);
                if (!strcmp(kw, "HELP")) {
                    if (f->has_help)
                        EXPO_FAIL("line %d: second HELP for %s", lineno, name);
                    f->has_help = 1;
                    if (off == 0 || line[off] == 0)
                        EXPO_FAIL("line %d: empty HELP for %s", lineno, name);
                } else {
                    const char *t = line + off;
                    if (f->type[0])
                        EXPO_FAIL("line %d: second TYPE for %s", lineno, name);
                    if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                        strcmp(t, "summary") && strcmp(t, "untyped"))
                        EXPO_FAIL("line %d: bad TYPE '%s' for %s", lineno, t, name);
                    for (int i = 0; i < e->ns; i++) {
                        const tu_family *sf = sample_family(e, e->s[i].name);
                        if (!strcmp(e->s[i].name, name) || (sf && sf == f))
                            EXPO_FAIL("line %d: TYPE for %s after its samples", lineno, name);
                    }
                    snprintf(f->type, sizeof f->type, "%s", t);
                    if (!strcmp(t, "counter") && !ends_with(name, "_total"))
                        EXPO_FAIL("line %d: counter %s does not end in _total", lineno, name);
                }
            }
            continue;
        }
        /* sample */
        char *p = line;
        while (*p && *p != '{' && *p != ' ')
            p++;
        tu_sample smp;
        memset(&smp, 0, sizeof smp);
        if ((size_t)(p - line) >= sizeof smp.name || !valid_metric_name(line, (size_t)(p - line)))
            EXPO_FAIL("line %d: bad sample name: %s", lineno, line);
        memcpy(smp.name, line, (size_t)(p - line));
        if (*p == '{') {
            char *q = ++p;
            int inq = 0;
            while (*q && (inq || *q != '}')) {
                if (inq && *q == '\\' && q[1])
                    q++;
                else if (*q == '"')
                    inq = !inq;
                q++;
            }
            if (*q != '}')
                EXPO_FAIL("line %d: unterminated labels", lineno);
            if ((size_t)(q - p) >= sizeof smp.labels)
                EXPO_FAIL("line %d: labels too long", lineno);
            memcpy(smp.labels, p, (size_t)(q - p));
            if (labels_walk(smp.labels, NULL, NULL))
                EXPO_FAIL("line %d: bad labels {%s}", lineno, smp.labels);
            p = q + 1;
        }
        if (*p != ' ')
            EXPO_FAIL("line %d: no value", lineno);
        p++;
        char val[64];
        char *sp = strchr(p, ' ');
        size_t vl = sp ? (size_t)(sp - p) : strlen(p);
        if (vl == 0 || vl >= sizeof val)
            EXPO_FAIL("line %d: bad value", lineno);
        memcpy(val, p, vl);
        val[vl] = 0;
        if (parse_value(val, &smp.value))
            EXPO_FAIL("line %d: bad value '%s'", lineno, val);
        if (sp) { /* optional timestamp */
            char *end;
            strtoll(sp + 1, &end, 10);
            if (*end)
                EXPO_FAIL("line %d: bad timestamp", lineno);
        }
        const tu_family *f = sample_family(e, smp.name);
        if (!f || !f->type[0])
            EXPO_FAIL("line %d: sample %s has no TYPE line", lineno, smp.name);
        if (!f->has_help)
            EXPO_FAIL("line %d: sample %s has no HELP line", lineno, smp.name);
        if (strcmp(last_family, f->name)) {
            /* a family's samples must be contiguous */
            for (int i = 0; i < e->ns; i++)
                if (sample_family(e, e->s[i].name) == f)
                    EXPO_FAIL("line %d: samples of %s are not contiguous", lineno, f->name);
            snprintf(last_family, sizeof last_family, "%s", f->name);
        }
        if (!strcmp(f->type, "counter") && (smp.value < 0 || isnan(smp.value)))
            EXPO_FAIL("line %d: negative counter %s", lineno, smp.name);
        if (!strcmp(f->type, "histogram")) {
            if (ends_with(smp.name, "_bucket")) {
                char le[64];
                if (label_get(smp.labels, "le", le, sizeof le))
                    EXPO_FAIL("line %d: bucket without le", lineno);
                double lv;
                if (parse_value(le, &lv))
                    EXPO_FAIL("line %d: bad le \"%s\"", lineno, le);
            } else if (!ends_with(smp.name, "_sum") && !ends_with(smp.name, "_count"))
                EXPO_FAIL("line %d: histogram sample %s", lineno, smp.name);
        }
        e->s = realloc(e->s, sizeof *e->s * (size_t)(e->ns + 1));
        e->s[e->ns++] = smp;
    }
    free(copy);
    copy = NULL;
    return check_histograms(e);
}

static int check_histograms(tu_expo *e)
{
    char *copy = NULL; /* for EXPO_FAIL */
    tu_buf key = {0}, k2 = {0};
    for (int fi = 0; fi < e->nf; fi++) {
        const tu_family *f = &e->f[fi];
        if (strcmp(f->type, "histogram"))
            continue;
        char bname[160], cname[160], sname[160];
        snprintf(bname, sizeof bname, "%s_bucket", f->name);
        snprintf(cname, sizeof cname, "%s_count", f->name);
        snprintf(sname, sizeof sname, "%s_sum", f->name);
        /* each _count series: its buckets, monotonic, +Inf == count, _sum */
        for (int i = 0; i < e->ns; i++) {
            if (strcmp(e->s[i].name, cname))
                continue;
            labels_without(e->s[i].labels, "le", &key);
            double count = e->s[i].value, prev_le = -INFINITY, prev_v = 0;
            int nb = 0, has_inf = 0, has_sum = 0;
            for (int j = 0; j < e->ns; j++) {
                if (!strcmp(e->s[j].name, sname)) {
                    labels_without(e->s[j].labels, "le", &k2);
                    if (!strcmp(k2.data, key.data))
                        has_sum = 1;
                    continue;
                }
                if (strcmp(e->s[j].name, bname))
                    continue;
                labels_without(e->s[j].labels, "le", &k2);
                if (strcmp(k2.data, key.data))
                    continue;
                char le[64];
                double lv;
                label_get(e->s[j].labels, "le", le, sizeof le);
                parse_value(le, &lv);
                if (lv <= prev_le) {
                    tu_buf_free(&key);
                    tu_buf_free(&k2);
                    EXPO_FAIL("%s{%s}: le not increasing", bname, e->s[j].labels);
                }
                if (e->s[j].value < prev_v) {
                    tu_buf_free(&key);
                    tu_buf_free(&k2);
                    EXPO_FAIL("%s{%s}: bucket counts not cumulative", bname, e->s[j].labels);
                }
                prev_le = lv;
                prev_v = e->s[j].value;
                nb++;
                if (isinf(lv) && lv > 0) {
                    has_inf = 1;
                    if (e->s[j].value != count) {
                        tu_buf_free(&key);
                        tu_buf_free(&k2);
                        EXPO_FAIL("%s{%s} = %g but _count = %g", bname, e->s[j].labels,
                                  e->s[j].value, count);
                    }
                }
            }
            if (!nb || !has_inf || !has_sum) {
                tu_buf_free(&key);
                tu_buf_free(&k2);
                EXPO_FAIL("histogram %s {%s}: buckets %d, +Inf %d, _sum %d", f->name,
                          e->s[i].labels, nb, has_inf, has_sum);
            }
        }
        /* every bucket series has a _count */
        for (int j = 0; j < e->ns; j++) {
            if (strcmp(e->s[j].name, bname))
                continue;
            labels_without(e->s[j].labels, "le", &key);
            int found = 0;
            for (int i = 0; i < e->ns && !found; i++) {
                if (strcmp(e->s[i].name, cname))
                    continue;
                labels_without(e->s[i].labels, "le", &k2);
                found = !strcmp(k2.data, key.data);
            }
            if (!found) {
                tu_buf_free(&key);
                tu_buf_free(&k2);
                EXPO_FAIL("%s{%s} has no _count", bname, e->s[j].labels);
            }
        }
    }
    tu_buf_free(&key);
    tu_buf_free(&k2);
    return 0;
}

void tu_expo_free(tu_expo *e)
{
    free(e->s);
    free(e->f);
    memset(e, 0, sizeof *e);
}

struct want_fn_ud {
    const char *raw;
    int ok;
};
static int want_fn(const char *k, size_t kn, const char *v, void *ud)
{
    struct want_fn_ud *w = ud;
    char key[128], got[512];
    snprintf(key, sizeof key, "%.*s", (int)kn, k);
    if (label_get(w->raw, key, got, sizeof got) || strcmp(got, v))
        w->ok = 0;
    return 0;
}

int tu_expo_sum(const tu_expo *e, const char *name, const char *want, double *sum)
{
    int n = 0;
    *sum = 0;
    for (int i = 0; i < e->ns; i++) {
        if (strcmp(e->s[i].name, name))
            continue;
        if (want && *want) {
            struct want_fn_ud w = {e->s[i].labels, 1};
            if (labels_walk(want, want_fn, &w) || !w.ok)
                continue;
        }
        *sum += e->s[i].value;
        n++;
    }
    return n;
}
