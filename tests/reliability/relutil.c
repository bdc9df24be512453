/* relutil.c - helpers for the reliability suites only (shared ones: tests/c/testutil.c). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relutil.h"

#ifndef PGSPOUT_SOURCE_DIR
#error "PGSPOUT_SOURCE_DIR must be defined (the repository root)"
#endif

/* ---------------------------------------------------------- filters */

void rel_filters(void)
{
    const char *run = getenv("REL_TEST_FILTER"), *skip = getenv("REL_SKIP_FILTER");
    if (run && *run)
        cmocka_set_test_filter(run);
    if (skip && *skip)
        cmocka_set_skip_filter(skip);
}

/* --------------------------------------------------------- watchdog */

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
        alarm((unsigned)tu_slack(seconds));
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
    tu_md5 m;
    tu_md5_init(&m);
    uint64_t n = 0;
    const pgspout_row *r;
    int rc;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        if (n++)
            tu_md5_update(&m, "\n", 1);
        int nc = pgspout_row_ncols(r);
        for (int c = 0; c < nc; c++) {
            size_t len;
            const char *v = pgspout_row_value(r, c, &len);
            if (c)
                tu_md5_update(&m, ",", 1);
            tu_md5_update(&m, v, len);
        }
    }
    if (rows)
        *rows = n;
    if (hex)
        tu_md5_hex(&m, hex);
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

void rel_expect_series(pgspout_conn *c, long rows)
{
    char sql[256], msql[256], err[512], hex[33];
    rel_series_sql(sql, sizeof sql, rows);
    rel_series_md5_sql(msql, sizeof msql, rows);
    char *want = tu_try_scalar(c, msql, 0, NULL);
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
