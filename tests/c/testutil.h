/* testutil.h - helpers shared by the pgspout cmocka suites (tests only): the
 * C suites in tests/c and the reliability suites in tests/reliability (whose
 * relutil.h adds what only they need). Built once, as the pgspout_testutil
 * target in tests/CMakeLists.txt.
 *
 * Server suites read the server from PGSPOUT_TEST_DSN. When it is missing
 * they exit with TU_SKIP_CODE (registered as SKIP_RETURN_CODE in ctest) and
 * a message, or fail when PGSPOUT_REQUIRE_DB=1.
 *
 * Functions that assert (tu_connect, tu_dsn_with, tu_scalar,
 * tu_expect_scalar, tu_opts, tu_json_same) use cmocka and must run on the
 * test's own thread; every other one never calls cmocka and is safe from
 * any thread.
 *
 * Include after <cmocka.h> (and its prerequisites).
 */
#ifndef PGSPOUT_TESTUTIL_H
#define PGSPOUT_TESTUTIL_H

#include "pgspout.h"
#include <stddef.h>
#include <stdint.h>

#define TU_SKIP_CODE 77

/* ------------------------------------------------------------- server */

/* The DSN, or NULL when not configured. */
const char *tu_dsn(void);
/* Call first in main() of an integration suite: returns -1 to go on, or an
 * exit status (TU_SKIP_CODE when skipping, 1 when PGSPOUT_REQUIRE_DB=1). */
int tu_db_gate(const char *suite);
/* A connection (asserts success). */
pgspout_conn *tu_connect(void);
/* The DSN with extra conninfo appended (malloc'd). */
char *tu_dsn_with(const char *extra);

/* Run sql (with params) to completion on conn and return the text of the
 * first column of the first row, malloc'd ("<NULL>" for SQL NULL, NULL when
 * no rows). Asserts that the stream succeeds. */
char *tu_scalar(pgspout_conn *c, const char *sql, int nparams, const char *const *params);
/* tu_scalar's value as a number (asserts a row). */
long tu_scalar_long(pgspout_conn *c, const char *sql, int nparams, const char *const *params);
/* The same without cmocka: NULL when the stream fails (or has no rows). */
char *tu_try_scalar(pgspout_conn *c, const char *sql, int nparams, const char *const *params);
/* Run sql on conn, check it succeeds and returns exactly one row with the
 * single value expected. Used to prove a connection is reusable. */
void tu_expect_scalar(pgspout_conn *c, const char *sql, const char *expected);
/* Options from key=value pairs, NULL-terminated list of keys and values. */
pgspout_options *tu_opts(const char *key, ...);

/* ----------------------------------------------------------------- time */
double tu_now(void); /* monotonic seconds */
void tu_sleep_ms(int ms);
void tu_sleep_us(long us);

/* ------------------------------------------------------------- valgrind */
/* Under valgrind memcheck the code runs 20-50x slower and the threads take
 * turns, so the suites keep every code path but scale big row and iteration
 * counts down (tu_scaled) and widen upper bounds on durations (tu_slack);
 * lower bounds (a timeout must not fire early) stay as they are.
 * Detected with RUNNING_ON_VALGRIND when <valgrind/valgrind.h> was found at
 * build time, else from PGSPOUT_UNDER_VALGRIND=1 (which scripts/test.sh's
 * valgrind stage sets). */
int tu_valgrind(void);
/* ThreadSanitizer: the suites built with -fsanitize=thread (scripts/test.sh's
 * tsan stage) run 3-7x slower where threads contend (a 1,000-iteration race
 * loop: 21 s native, 145 s under TSan; 6.4M rows over 64 streams: 22 s vs
 * 134 s), so they scale down and widen bounds as under valgrind. TSan
 * reports two accesses that no synchronisation orders in the run it
 * watches, whether or not they happened to collide, so a few hundred
 * iterations of a race loop still exercise each pair of racing calls
 * (though fewer timings than the native run).
 * Detected at build time (__SANITIZE_THREAD__, clang's
 * __has_feature(thread_sanitizer)), else from PGSPOUT_UNDER_TSAN=1. */
int tu_tsan(void);
/* native, or under_valgrind when running under valgrind or TSan */
long tu_scaled(long native, long under_valgrind);
/* an upper bound on a duration: s, or s * TU_VALGRIND_SLACK under valgrind
 * or TSan */
#define TU_VALGRIND_SLACK 5
double tu_slack(double s);

/* ------------------------------------------------------------------ md5 */
typedef struct tu_md5 {
    uint32_t a, b, c, d;
    uint64_t len;
    unsigned char buf[64];
} tu_md5;
void tu_md5_init(tu_md5 *m);
void tu_md5_update(tu_md5 *m, const void *p, size_t n);
void tu_md5_hex(tu_md5 *m, char out[33]);
/* One-shot. */
void tu_md5_str(const char *s, size_t n, char out[33]);

/* ------------------------------------------------------------ text buffer */
typedef struct tu_buf {
    char *data;
    size_t len, cap;
} tu_buf;
void tu_buf_add(tu_buf *b, const void *p, size_t n);
void tu_buf_adds(tu_buf *b, const char *s);
void tu_buf_addc(tu_buf *b, char c);
void tu_buf_free(tu_buf *b);

/* ----------------------------------------------------------------- JSON */
/* Strict RFC 8259 validator: exactly one value (surrounded by optional
 * whitespace), valid UTF-8, no raw control characters in strings, valid
 * escapes and surrogate pairs, numbers per the grammar. When out is not NULL
 * a canonical form is appended: no insignificant whitespace, strings decoded
 * and re-encoded with a fixed escaping, numbers verbatim. Returns 0 if valid,
 * -1 otherwise. */
int tu_json_canon(const char *s, size_t n, tu_buf *out);
/* 1 if valid, 0 otherwise (note: not tu_json_canon's 0/-1). */
int tu_json_valid(const char *s, size_t n);
/* 1 if both texts are valid JSON with the same canonical form. */
int tu_json_same(const char *a, size_t an, const char *b, size_t bn);

/* --------------------------------------------------------- Prometheus */
typedef struct tu_sample {
    char name[128];
    char labels[512]; /* raw text between { }, "" if none */
    double value;
} tu_sample;
typedef struct tu_family {
    char name[128];
    char type[16]; /* counter, gauge, histogram, summary, untyped */
    int has_help;
} tu_family;
typedef struct tu_expo {
    tu_sample *s;
    int ns;
    tu_family *f;
    int nf;
    char err[1024];
} tu_expo;
/* Parse text exposition format 0.0.4. Checks: HELP/TYPE lines well formed,
 * at most one TYPE per family and before its samples, metric and label names
 * valid, label values properly escaped, values parse, counters end in _total,
 * histogram buckets monotonic, +Inf bucket equals _count, _sum present.
 * Returns 0 or -1 with e->err set. */
int tu_expo_parse(const char *text, tu_expo *e);
void tu_expo_free(tu_expo *e);
/* Value of the sample with exactly this name whose labels contain every
 * comma-separated k="v" of `want` (NULL/"" = any); sums all that match.
 * Returns the number of matching samples. */
int tu_expo_sum(const tu_expo *e, const char *name, const char *want, double *sum);
const tu_family *tu_expo_family(const tu_expo *e, const char *name);

#endif
