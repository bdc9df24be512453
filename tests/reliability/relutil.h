/* relutil.h - helpers for the reliability suites (tests/reliability).
 *
 * The suites read the server from PGSPOUT_TEST_DSN. Without it they exit 77
 * (ctest: skipped) or 1 when PGSPOUT_REQUIRE_DB=1.
 *
 * Functions named rel_* that take no cmocka state never call cmocka and are
 * safe from any thread; those marked "asserts" use cmocka assertions and must
 * run on the test's own thread.
 */
#ifndef PGSPOUT_RELUTIL_H
#define PGSPOUT_RELUTIL_H

#include "pgspout.h"
#include <stddef.h>
#include <stdint.h>

#define REL_SKIP 77

/* ------------------------------------------------------------- gate */
const char *rel_dsn(void);
/* -1 to go on, else the exit status for main (77 skip, 1 required). */
int rel_db_gate(const char *suite);

/* cmocka filters from the environment: REL_TEST_FILTER (run only matching
 * tests) and REL_SKIP_FILTER (skip matching tests), e.g. under sanitizers. */
void rel_filters(void);

/* ---------------------------------------------------------- time */
double rel_now(void);
void rel_sleep_ms(int ms);
void rel_sleep_us(long us);
/* Kill the process (exit 1, message on stderr) unless rel_watchdog is called
 * again or with 0 within `seconds` (times REL_VALGRIND_SLACK under
 * valgrind). `what` is copied. */
void rel_watchdog(int seconds, const char *what);

/* ------------------------------------------------------- valgrind */
/* Under valgrind memcheck the code runs 20-50x slower and the threads take
 * turns, so the suites keep every code path but scale big row and iteration
 * counts down (rel_scaled) and widen upper bounds on durations (rel_slack,
 * and the watchdog); lower bounds (a timeout must not fire early) stay as
 * they are. Detected with RUNNING_ON_VALGRIND when <valgrind/valgrind.h>
 * was found at build time, else from PGSPOUT_UNDER_VALGRIND=1 (which
 * scripts/test.sh's valgrind stage sets). */
int rel_valgrind(void);
/* native, or under_valgrind when running under valgrind */
long rel_scaled(long native, long under_valgrind);
/* an upper bound on a duration: s, or s * REL_VALGRIND_SLACK under valgrind */
#define REL_VALGRIND_SLACK 5
double rel_slack(double s);

/* ----------------------------------------------------------- md5 */
typedef struct rel_md5 {
    uint32_t a, b, c, d;
    uint64_t len;
    unsigned char buf[64];
} rel_md5;
void rel_md5_init(rel_md5 *m);
void rel_md5_update(rel_md5 *m, const void *p, size_t n);
void rel_md5_hex(rel_md5 *m, char out[33]);

/* --------------------------------------------------------- streams */
/* Thread-safe: no cmocka. */
int rel_connect(const char *dsn, pgspout_conn **out);

/* The reference query: `SELECT i, md5(i::text) FROM generate_series(1,n) i`
 * into buf (>= 128 bytes). Its checksum is md5 over the rows rendered as
 * "v0,v1" joined by "\n", which the server computes as rel_series_md5_sql. */
void rel_series_sql(char *buf, size_t n, long rows);
void rel_series_md5_sql(char *buf, size_t n, long rows);

/* Drain an open stream: count rows and hash them (format above). Returns
 * the final code of next (DONE, or the error); *rows gets the row count. */
int rel_drain_md5(pgspout_stream *s, uint64_t *rows, char hex[33]);
/* Open sql with opts on c and drain it; returns the open code when it fails
 * (the stream is closed), else rel_drain_md5's code. No cmocka. */
int rel_stream_md5(pgspout_conn *c, const char *sql, const pgspout_options *o, uint64_t *rows,
                   char hex[33], char *err, size_t errlen);
/* First column of the first row of sql (with params), malloc'd, NULL on error
 * ("<NULL>" for SQL NULL). No cmocka. */
char *rel_scalar(pgspout_conn *c, const char *sql, int nparams, const char *const *params);

/* Asserts: sql gives exactly one row whose first value is expected, ending
 * in DONE; proves the connection is usable. */
void rel_expect_scalar(pgspout_conn *c, const char *sql, const char *expected);
/* Asserts: the reference query over `rows` rows streams with the server's
 * checksum on c (what "the connection still works" means here). */
void rel_expect_series(pgspout_conn *c, long rows);
/* Asserts: options from NULL-terminated key, value pairs. */
pgspout_options *rel_opts(const char *key, ...);

/* ------------------------------------------------------ Prometheus */
/* Sum of every sample named exactly `name` whose label text contains every
 * comma-separated k="v" of want (NULL = any). Returns matching samples or -1
 * on a malformed line. */
int rel_prom_sum(const char *text, const char *name, const char *want, double *sum);

/* ------------------------------------------------ separate servers */
/* A throwaway server of our own in dir (via scripts/pg-throwaway.sh), with
 * extra postgresql.conf lines. Returns the port or -1. The DSN for it is
 * "host=127.0.0.1 port=P user=pgspout dbname=pgspout". */
int rel_pg_start(const char *dir, const char *conf);
/* pg_ctl stop -m immediate / start on the same data directory (port kept). */
int rel_pg_stop_immediate(const char *dir);
int rel_pg_restart(const char *dir);
/* Stop and remove (pg-throwaway.sh stop). */
void rel_pg_destroy(const char *dir);
/* A fresh temporary directory, world-traversable (the server runs as
 * "postgres" when we are root); malloc'd. */
char *rel_tmpdir(const char *tag);
/* Run a shell command; returns its exit status (-1 when it did not run). */
int rel_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------- string checks */
int rel_contains(const char *hay, const char *needle);

#endif
