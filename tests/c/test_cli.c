/* test_cli.c - the pgspout command (core/cli) run as a child process against
 * a real server: interruption at every phase (issue 10), rows reaching a pipe
 * while the query still runs (issue 11), connection options (issue 13), the
 * progress line (issue 16), the documented exit statuses and the error line
 * (code name, message, SQLSTATE: issue 11).
 *
 *   test_cli PATH-OF-pgspout      (tests/CMakeLists.txt passes the built one)
 *
 * Nothing here races the wall clock: each test waits for a state it can see
 * (the query active in pg_stat_activity, the connection accepted by a silent
 * listener, a line read from the pipe) and then checks a property. The time
 * bounds only stop a test that would otherwise hang on a broken CLI; they
 * are far above what a working one needs and far below what a broken one
 * takes (a query that sleeps 300 s, a listener that never answers).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "pgspout.h"
#include "testutil.h"

extern char **environ;

static const char *g_cli; /* the pgspout binary under test */

/* Generous bounds (seconds), see the header comment. A cancelled query ends
 * in well under a second; 30 s absorbs a machine shared with other builds
 * and is still a tenth of the 300 s a missed cancel leaves the query to run. */
#define BOUND_EXIT   30.0
#define BOUND_STATE  30.0
#define LONG_SLEEP_S "300"

/* ------------------------------------------------------------ children */

typedef struct cli {
    pid_t pid;
    int out;          /* read end of the child's stdout, -1 when redirected */
    char errpath[64]; /* the child's stderr */
    int status;       /* exit status once reaped; -1 killed by a signal */
} cli;

/* Start the CLI with args (NULL-terminated, without argv[0]). stdout goes to
 * a pipe, or to the file stdout_path when given; stderr to a temp file. The
 * child starts with no blocked signals and default dispositions, as from a
 * shell. */
static void cli_start(cli *c, const char *stdout_path, const char *const *args)
{
    memset(c, 0, sizeof *c);
    c->out = -1;
    snprintf(c->errpath, sizeof c->errpath, "/tmp/test_cli_err.XXXXXX");
    int errfd = mkstemp(c->errpath);
    assert_true(errfd >= 0);
    int p[2] = {-1, -1};
    if (stdout_path == NULL)
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (stdout_path)
        posix_spawn_file_actions_addopen(&fa, 1, stdout_path, O_WRONLY | O_TRUNC | O_CREAT, 0600);
    else
        posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errfd, 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    const char *argv[32];
    int n = 0;
    argv[n++] = g_cli;
    for (int i = 0; args[i]; i++) {
        assert_true(n < 31);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int rc = posix_spawn(&c->pid, g_cli, &fa, &at, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(errfd);
    if (stdout_path == NULL) {
        close(p[1]);
        c->out = p[0];
    }
    if (rc != 0)
        fail_msg("cannot run %s: %s", g_cli, strerror(rc));
}

static void cancel_leftovers(void);

/* SIGKILL a CLI that overran its bound, reap it, and cancel what it left
 * running on the server (a killed CLI cancels nothing), then fail. */
static void kill_and_fail(cli *c, const char *what, double bound)
{
    int st;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    cancel_leftovers();
    fail_msg("%s: pgspout still running after %.0f s (killed)", what, tu_slack(bound));
}

/* Wait for the child to end; SIGKILL it and fail past bound seconds. */
static int cli_wait(cli *c, double bound, const char *what)
{
    double t0 = tu_now();
    for (;;) {
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid) {
            c->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            return c->status;
        }
        assert_int_equal(r, 0);
        if (tu_now() - t0 > tu_slack(bound))
            kill_and_fail(c, what, bound);
        tu_sleep_ms(20);
    }
}

/* Everything the child writes to stdout until it closes it; SIGKILL it and
 * fail if that takes more than bound seconds. */
static void cli_read_all(cli *c, tu_buf *b, double bound)
{
    char buf[65536];
    double t0 = tu_now();
    for (;;) {
        double left = tu_slack(bound) - (tu_now() - t0);
        if (left <= 0)
            kill_and_fail(c, "reading stdout", bound);
        struct pollfd pfd = {.fd = c->out, .events = POLLIN};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        ssize_t n = read(c->out, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        if (n == 0)
            break;
        tu_buf_add(b, buf, (size_t)n);
    }
    tu_buf_addc(b, '\0');
    b->len--;
}

/* The first line on the child's stdout (without the newline) into line;
 * fails if none arrives within bound seconds. */
static void cli_first_line(cli *c, char *line, size_t n, double bound)
{
    size_t len = 0;
    double t0 = tu_now();
    for (;;) {
        double left = tu_slack(bound) - (tu_now() - t0);
        if (left <= 0)
            kill_and_fail(c, "no output line", bound);
        struct pollfd pfd = {.fd = c->out, .events = POLLIN};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        char ch;
        ssize_t r = read(c->out, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            fail_msg("pgspout closed stdout before a whole line (%zu bytes)", len);
        if (ch == '\n')
            break;
        if (len + 1 < n)
            line[len++] = ch;
    }
    line[len] = '\0';
}

/* The child's stderr (malloc'd). */
static char *cli_stderr(cli *c)
{
    FILE *f = fopen(c->errpath, "r");
    assert_non_null(f);
    tu_buf b = {0};
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        tu_buf_add(&b, buf, n);
    fclose(f);
    tu_buf_addc(&b, '\0');
    return b.data;
}

static void cli_done(cli *c)
{
    if (c->out >= 0)
        close(c->out);
    unlink(c->errpath);
}

/* Run to the end, return the exit status; stdout into *out when not NULL,
 * stderr into *err when not NULL (both malloc'd). */
static int cli_run(const char *const *args, char **out, char **err)
{
    cli c;
    cli_start(&c, NULL, args);
    tu_buf b = {0};
    cli_read_all(&c, &b, BOUND_EXIT);
    int st = cli_wait(&c, BOUND_EXIT, args[0]);
    if (out)
        *out = b.data ? b.data : strdup("");
    else
        tu_buf_free(&b);
    if (err)
        *err = cli_stderr(&c);
    cli_done(&c);
    return st;
}

/* --------------------------------------------------------------- server */

static pgspout_conn *g_db; /* the test's own connection, for pg_stat_activity */

/* A tag unique to this process and test, put into the CLI's SQL as a string
 * literal so that pg_stat_activity can find exactly that query. */
static void make_tag(char *dst, size_t n, const char *name)
{
    snprintf(dst, n, "clitest_%ld_%s", (long)getpid(), name);
}

/* Cancel every server query carrying a tag of this process, except the
 * test's own backends' (used after killing a CLI that failed its test). */
static void cancel_leftovers(void)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%%clitest\\_%ld\\_%%", (long)getpid());
    const char *params[] = {pat};
    free(tu_try_scalar(g_db,
                       "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity "
                       "WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()",
                       1, params));
}

/* Backends (other than ours) running a query containing tag, in state
 * 'active'. The pattern goes as a parameter, so our own query text does not
 * contain the tag. */
static long active_with(const char *tag)
{
    char pat[160];
    snprintf(pat, sizeof pat, "%%%s%%", tag);
    const char *params[] = {pat};
    char *v = tu_scalar(g_db,
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE $1 AND pid <> pg_backend_pid()",
                        1, params);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

/* Wait until a query containing tag is active (the CLI got that far). */
static void wait_active(const char *tag, cli *c)
{
    double t0 = tu_now();
    while (active_with(tag) == 0) {
        int st;
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            char *e = cli_stderr(c);
            fail_msg("pgspout ended (status %d) before its query showed up: %s",
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1, e);
        }
        if (tu_now() - t0 > tu_slack(BOUND_STATE))
            kill_and_fail(c, "waiting for the query to show up", BOUND_STATE);
        tu_sleep_ms(20);
    }
}

/* After an interruption the server must not run the query any more. The
 * backend leaves 'active' right after it sends the cancel error, so allow it
 * a moment (bounded far below the 300 s the query would otherwise sleep). */
static void assert_not_running(const char *tag)
{
    double t0 = tu_now();
    long n;
    while ((n = active_with(tag)) != 0 && tu_now() - t0 < tu_slack(BOUND_STATE))
        tu_sleep_ms(50);
    if (n != 0) {
        cancel_leftovers();
        fail_msg("the server still runs %s after pgspout exited: not cancelled", tag);
    }
}

/* Run sql on conn to its end (a command: BEGIN, LOCK, ...). */
static void exec_sql(pgspout_conn *conn, const char *sql)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(conn, sql, 0, NULL, NULL, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("%s: %s", sql, s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
    const pgspout_row *r;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
        ;
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", sql, pgspout_stream_error(s));
    pgspout_stream_close(s);
}

/* ------------------------------------------------------------- listeners */

/* A TCP listener on 127.0.0.1 that never answers: the kernel completes the
 * handshake, nobody ever writes. Returns the socket; its port in *port. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accept the CLI's connection on a silent listener (proof that it is
 * connecting); returns the accepted socket, kept open and silent. */
static int accept_within(int lfd, double bound)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)(tu_slack(bound) * 1000));
    assert_int_equal(r, 1);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* ========================================================== issue 10
 * SIGINT/SIGTERM at every phase before the first row: exit 130 and no
 * query left running on the server. */

static void interrupt_during_open(int sig, int with_progress)
{
    char tag[96], sql[256];
    make_tag(tag, sizeof tag, with_progress ? "open_progress" : "open");
    snprintf(sql, sizeof sql, "SELECT pg_sleep(" LONG_SLEEP_S "), '%s' AS tag", tag);
    const char *args[] = {"--dsn", tu_dsn(), with_progress ? "--progress" : "--no-header", sql,
                          NULL};
    cli c;
    cli_start(&c, NULL, args);
    wait_active(tag, &c); /* the CLI waits in pgspout_stream_open now */
    assert_int_equal(kill(c.pid, sig), 0);
    tu_buf out = {0};
    cli_read_all(&c, &out, BOUND_EXIT);
    assert_int_equal(cli_wait(&c, BOUND_EXIT, tag), 130);
    assert_int_equal(out.len, 0); /* no row came, none may be claimed */
    char *err = cli_stderr(&c);
    assert_non_null(strstr(err, "interrupted"));
    free(err);
    tu_buf_free(&out);
    cli_done(&c);
    assert_not_running(tag);
}

static void test_sigint_during_open(void **state)
{
    (void)state;
    interrupt_during_open(SIGINT, 0);
}

static void test_sigterm_during_open(void **state)
{
    (void)state;
    interrupt_during_open(SIGTERM, 0);
}

static void test_sigint_during_open_with_progress(void **state)
{
    (void)state;
    interrupt_during_open(SIGINT, 1);
}

/* --progress first asks the planner for a row estimate (EXPLAIN). Planning
 * waits for a lock on the table the test holds, so the CLI is provably
 * inside the estimate when the signal comes. The real query must never run. */
static pgspout_conn *g_locker;
static char g_locked[96];

static void drop_locked(void)
{
    char drop[160];
    snprintf(drop, sizeof drop, "DROP TABLE IF EXISTS %s", g_locked);
    exec_sql(g_db, drop);
}

static void test_sigint_during_estimate(void **state)
{
    (void)state;
    char sql[160], lock[160], create[160];
    make_tag(g_locked, sizeof g_locked, "locked");
    snprintf(create, sizeof create, "CREATE TABLE %s (x int)", g_locked);
    snprintf(lock, sizeof lock, "LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", g_locked);
    snprintf(sql, sizeof sql, "SELECT x FROM %s", g_locked);
    drop_locked();
    exec_sql(g_db, create);
    g_locker = tu_connect();
    exec_sql(g_locker, "BEGIN");
    exec_sql(g_locker, lock);

    const char *args[] = {"--dsn", tu_dsn(), "--progress", sql, NULL};
    cli c;
    cli_start(&c, NULL, args);
    char explain[256];
    snprintf(explain, sizeof explain, "EXPLAIN (FORMAT JSON) %s", sql);
    wait_active(explain, &c); /* planning, blocked on our lock */
    assert_int_equal(kill(c.pid, SIGINT), 0);
    tu_buf out = {0};
    cli_read_all(&c, &out, BOUND_EXIT);
    assert_int_equal(cli_wait(&c, BOUND_EXIT, "estimate"), 130);
    assert_int_equal(out.len, 0);
    tu_buf_free(&out);
    cli_done(&c);
    assert_not_running(g_locked); /* neither the EXPLAIN nor the query */
}

/* Ends the locker's transaction (even after a failure) and drops the table. */
static int teardown_locked(void **state)
{
    (void)state;
    if (g_locker) {
        pgspout_conn_close(g_locker); /* rolls the transaction back */
        g_locker = NULL;
    }
    if (g_locked[0])
        drop_locked();
    return 0;
}

/* Connecting to a host that never answers, without connect_timeout: no
 * handle exists yet; the CLI must still exit 130 promptly, printing nothing
 * on stdout. */
static void interrupt_during_connect(int sig)
{
    int port;
    int lfd = silent_listener(&port);
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=x dbname=x sslmode=disable", port);
    const char *args[] = {"--dsn", dsn, "SELECT 1", NULL};
    cli c;
    cli_start(&c, NULL, args);
    int afd = accept_within(lfd, BOUND_STATE); /* it is connecting now */
    assert_int_equal(kill(c.pid, sig), 0);
    tu_buf out = {0};
    cli_read_all(&c, &out, BOUND_EXIT);
    assert_int_equal(cli_wait(&c, BOUND_EXIT, "connect"), 130);
    assert_int_equal(out.len, 0);
    tu_buf_free(&out);
    cli_done(&c);
    close(afd);
    close(lfd);
}

static void test_sigint_during_connect(void **state)
{
    (void)state;
    interrupt_during_connect(SIGINT);
}

static void test_sigterm_during_connect(void **state)
{
    (void)state;
    interrupt_during_connect(SIGTERM);
}

/* ========================================================== issue 11
 * Rows reach a pipe as they come. Rows 1 and 2 are produced at once; row 3
 * sleeps 300 s. Each row is larger than the server's 8 kB send buffer, so
 * the server sends row 1 before it starts sleeping. The first line must be
 * readable while the query is still active on the server: a CLI that holds
 * its output until the end (or until 1 MiB) can show it only afterwards. */
static void test_rows_reach_pipe_while_query_runs(void **state)
{
    (void)state;
    char tag[96], sql[320];
    make_tag(tag, sizeof tag, "flush");
    snprintf(sql, sizeof sql,
             "SELECT g, repeat('x', 20000) AS pad, "
             "pg_sleep(CASE WHEN g > 2 THEN " LONG_SLEEP_S " ELSE 0 END), '%s' AS tag "
             "FROM generate_series(1, 5) g",
             tag);
    /* one row per chunk: the chunked transport holds a chunk until it is full */
    const char *args[] = {"--dsn",        tu_dsn(), "--format", "csv", "--no-header",
                          "--chunk-rows", "1",      sql,        NULL};
    cli c;
    cli_start(&c, NULL, args);
    char line[32];
    cli_first_line(&c, line, sizeof line, BOUND_STATE);
    assert_true(strncmp(line, "1,xxxx", 6) == 0);
    assert_int_equal(active_with(tag), 1); /* the property: still running */
    /* and an interruption while rows flow (SIGTERM = SIGINT) still cancels */
    assert_int_equal(kill(c.pid, SIGTERM), 0);
    tu_buf rest = {0};
    cli_read_all(&c, &rest, BOUND_EXIT);
    assert_int_equal(cli_wait(&c, BOUND_EXIT, tag), 130);
    tu_buf_free(&rest);
    cli_done(&c);
    assert_not_running(tag);
}

/* Fast streams still arrive complete and in order (flushing at waits must
 * not lose or reorder anything): 200000 rows through a pipe. */
static void test_many_rows_complete(void **state)
{
    (void)state;
    const char *args[] = {
        "--dsn",  tu_dsn(),      "--format",
        "tsv",    "--no-header", "SELECT g, md5(g::text) FROM generate_series(1, $1::int) g",
        "200000", NULL};
    char *out = NULL;
    assert_int_equal(cli_run(args, &out, NULL), 0);
    char *want = tu_scalar(g_db,
                           "SELECT md5(string_agg(g || E'\\t' || md5(g::text), E'\\n' ORDER BY g) "
                           "|| E'\\n') FROM generate_series(1, 200000) g",
                           0, NULL);
    char got[33];
    tu_md5_str(out, strlen(out), got);
    assert_string_equal(got, want);
    free(want);
    free(out);
}

/* ========================================================== issue 13
 * Connection options given with -o are applied. */

static void test_application_name_applied(void **state)
{
    (void)state;
    char name[96], opt[128];
    make_tag(name, sizeof name, "app");
    snprintf(opt, sizeof opt, "application_name=%s", name);
    const char *args[] = {
        "--dsn",    tu_dsn(), "-o",          opt,
        "--format", "csv",    "--no-header", "SELECT current_setting('application_name')",
        NULL};
    char *out = NULL;
    assert_int_equal(cli_run(args, &out, NULL), 0);
    char want[128];
    snprintf(want, sizeof want, "%s\n", name);
    assert_string_equal(out, want);
    free(out);
}

/* connect_timeout=1s against a host that never answers: exit 3, long before
 * the bound (libpq waits at least 2 s; the bound absorbs a busy machine). */
static void test_connect_timeout_applied(void **state)
{
    (void)state;
    int port;
    int lfd = silent_listener(&port);
    char dsn[128];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d user=x dbname=x", port);
    const char *args[] = {"--dsn", dsn, "-o", "connect_timeout=1s", "SELECT 1", NULL};
    cli c;
    cli_start(&c, NULL, args);
    int st = cli_wait(&c, 15.0, "connect_timeout");
    char *err = cli_stderr(&c);
    cli_done(&c);
    close(lfd);
    assert_int_equal(st, 3);
    assert_non_null(strstr(err, "timeout"));
    free(err);
}

/* Keys the command cannot honour are refused rather than ignored. */
static void test_unusable_options_refused(void **state)
{
    (void)state;
    const char *rows[] = {"--dsn", tu_dsn(), "-o", "rows=dict", "SELECT 1", NULL};
    const char *idle[] = {"--dsn", tu_dsn(), "-o", "idle_timeout=5s", "SELECT 1", NULL};
    const char *expected[] = {"--dsn", tu_dsn(), "--expected-rows", "5", "SELECT 1", NULL};
    const char *interval[] = {"--dsn", tu_dsn(), "-o", "progress_interval=1s", "SELECT 1", NULL};
    assert_int_equal(cli_run(rows, NULL, NULL), 2);
    assert_int_equal(cli_run(idle, NULL, NULL), 2);
    assert_int_equal(cli_run(expected, NULL, NULL), 2);
    assert_int_equal(cli_run(interval, NULL, NULL), 2);
}

/* ========================================================== issue 16
 * The progress line: no percentage or ETA without an estimate; the bytes
 * are labelled as what they are. */

static void test_progress_without_estimate(void **state)
{
    (void)state;
    /* SHOW has no plan: EXPLAIN fails, so there is no row estimate */
    const char *args[] = {"--dsn", tu_dsn(), "--progress", "SHOW server_version", NULL};
    char *err = NULL;
    assert_int_equal(cli_run(args, NULL, &err), 0);
    assert_null(strchr(err, '%')); /* was " 1 rows0%" */
    assert_null(strstr(err, "ETA"));
    assert_null(strchr(err, '['));
    assert_non_null(strstr(err, "1 rows  "));
    assert_non_null(strstr(err, "of values received"));
    free(err);
}

static void test_progress_with_estimate(void **state)
{
    (void)state;
    const char *args[] = {"--dsn",      tu_dsn(),
                          "--progress", "--expected-rows",
                          "10",         "SELECT g FROM generate_series(1, 10) g",
                          NULL};
    char *err = NULL;
    assert_int_equal(cli_run(args, NULL, &err), 0);
    assert_non_null(strstr(err, "100%"));
    assert_non_null(strstr(err, "10 rows"));
    assert_non_null(strstr(err, "of values received"));
    free(err);
}

/* ====================================================== exit statuses */

static void test_exit_statuses(void **state)
{
    (void)state;
    const char *ok[] = {"--dsn", tu_dsn(), "SELECT 1 AS one", NULL};
    const char *help[] = {"--help", NULL};
    const char *nosql[] = {"--dsn", tu_dsn(), NULL};
    const char *badfmt[] = {"--format", "xml", "SELECT 1", NULL};
    const char *badopt[] = {"-o", "no_such_key=1", "SELECT 1", NULL};
    const char *badval[] = {"--chunk-rows", "zero", "SELECT 1", NULL};
    const char *noeq[] = {"-o", "chunk_rows", "SELECT 1", NULL};
    const char *unknown[] = {"--no-such-flag", "SELECT 1", NULL};
    const char *sqlerr[] = {"--dsn", tu_dsn(), "SELECT 1 / (g - 3) FROM generate_series(1, 5) g",
                            NULL};
    const char *syntax[] = {"--dsn", tu_dsn(), "SELEKT 1", NULL};
    const char *inconsistent[] = {
        "--dsn",    tu_dsn(), "-o", "chunk_rows_min=500", "-o", "chunk_rows_max=100",
        "SELECT 1", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(cli_run(ok, &out, NULL), 0);
    assert_string_equal(out, "{\"one\":1}\n");
    free(out);
    assert_int_equal(cli_run(help, NULL, NULL), 0);
    assert_int_equal(cli_run(nosql, NULL, NULL), 2);
    assert_int_equal(cli_run(badfmt, NULL, NULL), 2);
    assert_int_equal(cli_run(badopt, NULL, NULL), 2);
    assert_int_equal(cli_run(badval, NULL, NULL), 2);
    assert_int_equal(cli_run(noeq, NULL, NULL), 2);
    assert_int_equal(cli_run(unknown, NULL, NULL), 2);
    assert_int_equal(cli_run(sqlerr, NULL, &err), 1);
    assert_non_null(strstr(err, "22012"));
    free(err);
    assert_int_equal(cli_run(syntax, NULL, NULL), 1);
    assert_int_equal(cli_run(inconsistent, NULL, NULL), 2);

    /* connection refused: a port that was just free */
    int port;
    close(silent_listener(&port));
    char dsn[96];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d", port);
    const char *refused[] = {"--dsn", dsn, "SELECT 1", NULL};
    assert_int_equal(cli_run(refused, NULL, NULL), 3);
    const char *malformed[] = {"--dsn", "host=127.0.0.1 port", "SELECT 1", NULL};
    assert_int_equal(cli_run(malformed, NULL, NULL), 3);
}

/* Every error the library reports gives one line "pgspout: <code name>:
 * <message> (SQLSTATE xxxxx)", the SQLSTATE included when the library sets
 * it (53200 for max_memory: it used to be dropped) and not repeated when the
 * server's message carries it already (issue 11). */
static void assert_error_line(const char *const *args, int want_status, const char *want)
{
    char *err = NULL;
    assert_int_equal(cli_run(args, NULL, &err), want_status);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("stderr %s, want it to start with %s", err, want);
    free(err);
}

static void test_error_line(void **state)
{
    (void)state;
    const char *memory[] = {
        "--dsn", tu_dsn(), "-o", "max_memory=64kB", "SELECT repeat('x', 200000)", NULL};
    const char *division[] = {"--dsn", tu_dsn(), "SELECT 1 / (g - 3) FROM generate_series(1, 5) g",
                              NULL};
    const char *stmt_timeout[] = {
        "--dsn", tu_dsn(), "-o", "statement_timeout=100ms", "SELECT pg_sleep(30)", NULL};
    const char *timeout[] = {"--dsn", tu_dsn(), "--timeout", "100ms", "SELECT pg_sleep(30)", NULL};
    const char *option[] = {"-o", "no_such_key=1", "SELECT 1", NULL};
    const char *value[] = {"--chunk-rows", "zero", "SELECT 1", NULL};
    assert_error_line(memory, 1,
                      "pgspout: ememory: max_memory of 65536 bytes exceeded: a row needs 200040 "
                      "bytes (memory_fail 1.00) (SQLSTATE 53200)\n");
    assert_error_line(division, 1, "pgspout: esql: division by zero (SQLSTATE 22012)\n");
    assert_error_line(stmt_timeout, 1,
                      "pgspout: esql: canceling statement due to statement timeout (SQLSTATE "
                      "57014)\n");
    /* no SQLSTATE to give: none added */
    assert_error_line(timeout, 1, "pgspout: etimeout: timeout of 100 ms exceeded after ");
    assert_error_line(option, 2, "pgspout: eoption: unknown option \"no_such_key\"\n");
    assert_error_line(value, 2, "pgspout: evalue: option chunk_rows: bad value \"zero\"");

    int port;
    close(silent_listener(&port));
    char dsn[96];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d", port);
    const char *refused[] = {"--dsn", dsn, "SELECT 1", NULL};
    assert_error_line(refused, 3, "pgspout: econnect: connection failed: ");
}

/* A write error on stdout (not a reader that went away) is an error, exit 1
 * with the reason; rows are not silently dropped. */
static void test_write_error_exit_status(void **state)
{
    (void)state;
    const char *args[] = {"--dsn", tu_dsn(), "SELECT g FROM generate_series(1, 1000) g", NULL};
    cli c;
    cli_start(&c, "/dev/full", args);
    int st = cli_wait(&c, BOUND_EXIT, "/dev/full");
    char *err = cli_stderr(&c);
    cli_done(&c);
    assert_int_equal(st, 1);
    assert_non_null(strstr(err, "writing output"));
    free(err);
}

/* A reader that goes away (head -1) ends the stream quietly with status 0
 * and the server query cancelled. */
static void test_reader_goes_away(void **state)
{
    (void)state;
    char tag[96], sql[320];
    make_tag(tag, sizeof tag, "epipe");
    snprintf(sql, sizeof sql,
             "SELECT g, repeat('x', 20000) AS pad, "
             "pg_sleep(CASE WHEN g > 2 THEN 1 ELSE 0 END), '%s' AS tag "
             "FROM generate_series(1, " LONG_SLEEP_S ") g",
             tag);
    /* one row per chunk: the chunked transport holds a chunk until it is full */
    const char *args[] = {"--dsn", tu_dsn(), "--chunk-rows", "1", sql, NULL};
    cli c;
    cli_start(&c, NULL, args);
    char line[16];
    cli_first_line(&c, line, sizeof line, BOUND_STATE);
    close(c.out);
    c.out = -1;
    int st = cli_wait(&c, BOUND_EXIT, tag);
    char *err = cli_stderr(&c);
    cli_done(&c);
    assert_int_equal(st, 0);
    assert_string_equal(err, "");
    free(err);
    assert_not_running(tag);
}

/* -------------------------------------------------------------- main */

static int setup(void **state)
{
    (void)state;
    g_db = tu_connect();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pgspout_conn_close(g_db);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli PATH-OF-pgspout\n");
        return 2;
    }
    g_cli = argv[1];
    int gate = tu_db_gate("test_cli");
    if (gate >= 0)
        return gate;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigint_during_open),
        cmocka_unit_test(test_sigterm_during_open),
        cmocka_unit_test(test_sigint_during_open_with_progress),
        cmocka_unit_test_teardown(test_sigint_during_estimate, teardown_locked),
        cmocka_unit_test(test_sigint_during_connect),
        cmocka_unit_test(test_sigterm_during_connect),
        cmocka_unit_test(test_rows_reach_pipe_while_query_runs),
        cmocka_unit_test(test_many_rows_complete),
        cmocka_unit_test(test_application_name_applied),
        cmocka_unit_test(test_connect_timeout_applied),
        cmocka_unit_test(test_unusable_options_refused),
        cmocka_unit_test(test_progress_without_estimate),
        cmocka_unit_test(test_progress_with_estimate),
        cmocka_unit_test(test_exit_statuses),
        cmocka_unit_test(test_error_line),
        cmocka_unit_test(test_write_error_exit_status),
        cmocka_unit_test(test_reader_goes_away),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
