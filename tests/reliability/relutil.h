/* relutil.h - helpers for the reliability suites (tests/reliability) only;
 * the helpers they share with the C suites (server gate, time, valgrind,
 * md5, scalar queries, options, the Prometheus parser) are the tu_* ones of
 * tests/c/testutil.h, included here.
 *
 * The suites read the server from PGSPOUT_TEST_DSN (tu_dsn, tu_db_gate).
 * Without it they exit 77 (ctest: skipped) or 1 when PGSPOUT_REQUIRE_DB=1.
 *
 * Functions named rel_* that take no cmocka state never call cmocka and are
 * safe from any thread; those marked "asserts" use cmocka assertions and must
 * run on the test's own thread.
 */
#ifndef PGSPOUT_RELUTIL_H
#define PGSPOUT_RELUTIL_H

#include "pgspout.h"
#include "testutil.h"
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------- filters */
/* cmocka filters from the environment: REL_TEST_FILTER (run only matching
 * tests) and REL_SKIP_FILTER (skip matching tests), e.g. under sanitizers. */
void rel_filters(void);

/* --------------------------------------------------------- watchdog */
/* Kill the process (exit 1, message on stderr) unless rel_watchdog is called
 * again or with 0 within `seconds` (times TU_VALGRIND_SLACK under valgrind,
 * see tu_slack). `what` is copied. */
void rel_watchdog(int seconds, const char *what);

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
/* Asserts: the reference query over `rows` rows streams with the server's
 * checksum on c (what "the connection still works" means here). */
void rel_expect_series(pgspout_conn *c, long rows);

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
