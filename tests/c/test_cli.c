/* test_cli.c - the pgspout command (core/cli) run as a child process against
 * a real server: interruption at every phase (issue 10), rows reaching a pipe
 * while the query still runs (issue 11), connection options (issue 13), the
 * progress line (issue 16), the documented exit statuses and the error line
 * (code name, message, SQLSTATE: issue 11), and psql's vocabulary (issue
 * 15: connection flags and arguments, -c/-f/stdin, --param, -o written
 * atomically, -F json, refusals, the password prompt on a pseudo-terminal).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <pty.h>
#include <termios.h>

#include "pgspout.h"
#include "testutil.h"

extern char **environ;

static const char *g_cli;                 /* the pgspout binary under test */
static const char *g_stdin = "/dev/null"; /* the child's stdin */
static char **g_env;                      /* the child's environment, NULL: ours */

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
    posix_spawn_file_actions_addopen(&fa, 0, g_stdin, O_RDONLY, 0);
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

    const char *argv[48];
    int n = 0;
    argv[n++] = g_cli;
    for (int i = 0; args[i]; i++) {
        assert_true(n < 47);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int rc = posix_spawn(&c->pid, g_cli, &fa, &at, (char *const *)argv, g_env ? g_env : environ);
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
    const char *args[] = {"-d", tu_dsn(), with_progress ? "--progress" : "--no-header",
                          "-c", sql,      NULL};
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

    const char *args[] = {"-d", tu_dsn(), "--progress", "-c", sql, NULL};
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
    const char *args[] = {"-d", dsn, "-c", "SELECT 1", NULL};
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
    const char *args[] = {"-d",           tu_dsn(), "-F", "csv", "--no-header",
                          "--chunk-rows", "1",      "-c", sql,   NULL};
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
    const char *args[] = {"-d",
                          tu_dsn(),
                          "-F",
                          "tsv",
                          "--no-header",
                          "-c",
                          "SELECT g, md5(g::text) FROM generate_series(1, $1::int) g",
                          "--param",
                          "200000",
                          NULL};
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
 * Connection options given with --option are applied. */

static void test_application_name_applied(void **state)
{
    (void)state;
    char name[96], opt[128];
    make_tag(name, sizeof name, "app");
    snprintf(opt, sizeof opt, "application_name=%s", name);
    const char *args[] = {"-d",          tu_dsn(), "--option",
                          opt,           "-F",     "csv",
                          "--no-header", "-c",     "SELECT current_setting('application_name')",
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
    const char *args[] = {"-d", dsn, "--option", "connect_timeout=1s", "-c", "SELECT 1", NULL};
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
    const char *rows[] = {"-d", tu_dsn(), "--option", "rows=dict", "-c", "SELECT 1", NULL};
    const char *idle[] = {"-d", tu_dsn(), "--option", "idle_timeout=5s", "-c", "SELECT 1", NULL};
    const char *expected[] = {"-d", tu_dsn(), "--expected-rows", "5", "-c", "SELECT 1", NULL};
    const char *interval[] = {"-d", tu_dsn(),   "--option", "progress_interval=1s",
                              "-c", "SELECT 1", NULL};
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
    const char *args[] = {"-d", tu_dsn(), "--progress", "-c", "SHOW server_version", NULL};
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
    const char *args[] = {"-d",
                          tu_dsn(),
                          "--progress",
                          "--expected-rows",
                          "10",
                          "-c",
                          "SELECT g FROM generate_series(1, 10) g",
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
    const char *ok[] = {"-d", tu_dsn(), "-c", "SELECT 1 AS one", NULL};
    const char *help[] = {"--help", NULL};
    const char *nosql[] = {"-d", tu_dsn(), NULL}; /* stdin is /dev/null: no query */
    const char *badfmt[] = {"-F", "xml", "-c", "SELECT 1", NULL};
    const char *badopt[] = {"--option", "no_such_key=1", "-c", "SELECT 1", NULL};
    const char *badval[] = {"--chunk-rows", "zero", "-c", "SELECT 1", NULL};
    const char *noeq[] = {"--option", "chunk_rows", "-c", "SELECT 1", NULL};
    const char *unknown[] = {"--no-such-flag", "-c", "SELECT 1", NULL};
    const char *sqlerr[] = {"-d", tu_dsn(), "-c", "SELECT 1 / (g - 3) FROM generate_series(1, 5) g",
                            NULL};
    const char *syntax[] = {"-d", tu_dsn(), "-c", "SELEKT 1", NULL};
    const char *inconsistent[] = {
        "-d", tu_dsn(),   "--option", "chunk_rows_min=500", "--option", "chunk_rows_max=100",
        "-c", "SELECT 1", NULL};
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
    const char *refused[] = {"-d", dsn, "-c", "SELECT 1", NULL};
    assert_int_equal(cli_run(refused, NULL, NULL), 3);
    const char *malformed[] = {"-d", "host=127.0.0.1 port", "-c", "SELECT 1", NULL};
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
        "-d", tu_dsn(), "--option", "max_memory=64kB", "-c", "SELECT repeat('x', 200000)", NULL};
    const char *division[] = {"-d", tu_dsn(), "-c",
                              "SELECT 1 / (g - 3) FROM generate_series(1, 5) g", NULL};
    const char *stmt_timeout[] = {
        "-d", tu_dsn(), "--option", "statement_timeout=100ms", "-c", "SELECT pg_sleep(30)", NULL};
    const char *timeout[] = {"-d", tu_dsn(), "--timeout", "100ms", "-c", "SELECT pg_sleep(30)",
                             NULL};
    const char *option[] = {"--option", "no_such_key=1", "-c", "SELECT 1", NULL};
    const char *value[] = {"--chunk-rows", "zero", "-c", "SELECT 1", NULL};
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
    const char *refused[] = {"-d", dsn, "-c", "SELECT 1", NULL};
    assert_error_line(refused, 3, "pgspout: econnect: connection failed: ");
}

/* A write error on stdout (not a reader that went away) is an error, exit 1
 * with the reason; rows are not silently dropped. */
static void test_write_error_exit_status(void **state)
{
    (void)state;
    const char *args[] = {"-d", tu_dsn(), "-c", "SELECT g FROM generate_series(1, 1000) g", NULL};
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
    const char *args[] = {"-d", tu_dsn(), "--chunk-rows", "1", "-c", sql, NULL};
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

/* ========================================================== issue 15
 * psql's vocabulary: connection flags and arguments, the query's sources,
 * parameters, -o written atomically, the JSON array, help and version, and
 * refusals that name the psql way. Data is checked against what the server
 * computes. */

/* The server the test DSN reaches, as the flags name it; skips the test when
 * it is not reached over TCP (no host to give -h). */
typedef struct server {
    char *host, *port, *user, *db;
} server;

static void server_get(server *sv)
{
    sv->host = tu_scalar(g_db, "SELECT coalesce(host(inet_server_addr()), '')", 0, NULL);
    if (sv->host[0] == '\0') {
        free(sv->host);
        skip(); /* a Unix socket DSN: nothing for -h */
    }
    sv->port = tu_scalar(g_db, "SELECT inet_server_port()", 0, NULL);
    sv->user = tu_scalar(g_db, "SELECT current_user", 0, NULL);
    sv->db = tu_scalar(g_db, "SELECT current_database()", 0, NULL);
}

static void server_free(server *sv)
{
    free(sv->host), free(sv->port), free(sv->user), free(sv->db);
}

/* The query every connection test runs and the line it must print. */
#define WHO_SQL                                                                                    \
    "SELECT current_user, current_database(), inet_server_port(), "                                \
    "current_setting('application_name')"

static void expect_who(const char *const *args, const server *sv, const char *what)
{
    char *out = NULL, *err = NULL, want[512];
    int st = cli_run(args, &out, &err);
    if (st != 0)
        fail_msg("%s: exit %d: %s", what, st, err);
    /* fallback_application_name: pgspout, as psql says psql */
    snprintf(want, sizeof want, "%s,%s,%s,pgspout\n", sv->user, sv->db, sv->port);
    if (strcmp(out, want) != 0)
        fail_msg("%s: got %s, want %s", what, out, want);
    free(out);
    free(err);
}

static void test_connection_flags(void **state)
{
    (void)state;
    server sv;
    server_get(&sv);
    char conninfo[512], uri[512];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s user=%s dbname=%s", sv.host, sv.port,
             sv.user, sv.db);
    snprintf(uri, sizeof uri, "postgresql://%s@%s:%s/%s", sv.user, sv.host, sv.port, sv.db);
    const char *H = sv.host, *P = sv.port, *U = sv.user, *D = sv.db;
#define RUN(...)                                                                                   \
    do {                                                                                           \
        const char *a[] = {__VA_ARGS__, "-F", "csv", "--no-header", "-c", WHO_SQL, NULL};          \
        expect_who(a, &sv, #__VA_ARGS__);                                                          \
    } while (0)
    RUN("-h", H, "-p", P, "-U", U, "-d", D);
    RUN("--host", H, "--port", P, "--username", U, "--dbname", D);
    RUN("-h", H, "-p", P, D, U);       /* bare DBNAME USERNAME */
    RUN("-h", H, "-p", P, "-d", D, U); /* with -d, the bare argument is USERNAME */
    RUN("-h", H, "-p", P, "-U", U, D); /* with -U, it is DBNAME */
    RUN("-d", conninfo);               /* a conninfo in -d */
    RUN(conninfo);                     /* and bare */
    RUN("-d", uri);                    /* a URI */
    RUN("-p", "1", "-h", "nowhere.invalid", "-d", conninfo); /* its keys win, as in psql */
    RUN("-w", "-d", uri);
#undef RUN
    /* PG* variables when nothing is given */
    char e_host[128], e_port[64], e_user[128], e_db[128];
    snprintf(e_host, sizeof e_host, "PGHOST=%s", H);
    snprintf(e_port, sizeof e_port, "PGPORT=%s", P);
    snprintf(e_user, sizeof e_user, "PGUSER=%s", U);
    snprintf(e_db, sizeof e_db, "PGDATABASE=%s", D);
    char *env[] = {e_host, e_port, e_user, e_db, "PATH=/usr/bin:/bin", NULL};
    g_env = env;
    const char *none[] = {"-F", "csv", "--no-header", "-c", WHO_SQL, NULL};
    expect_who(none, &sv, "PG* variables");
    /* a flag overrides its variable: PGPORT wrong, -p right */
    char bad_port[] = "PGPORT=1";
    env[1] = bad_port;
    const char *port_flag[] = {"-p", P, "-F", "csv", "--no-header", "-c", WHO_SQL, NULL};
    expect_who(port_flag, &sv, "-p over PGPORT");
    g_env = NULL;
    server_free(&sv);
}

/* The query's rows as TSV must equal the server's own rendering of them. */
#define ROWS_SQL "SELECT g, md5(g::text) FROM generate_series(1, $1::int) g"

static void expect_rows_md5(const char *out, int n)
{
    char nbuf[16], got[33];
    snprintf(nbuf, sizeof nbuf, "%d", n);
    const char *params[] = {nbuf};
    char *want = tu_scalar(g_db,
                           "SELECT md5(string_agg(g || E'\\t' || md5(g::text), E'\\n' ORDER BY g) "
                           "|| E'\\n') FROM generate_series(1, $1::int) g",
                           1, params);
    tu_md5_str(out, strlen(out), got);
    assert_string_equal(got, want);
    free(want);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_query_sources(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_cli_sql.XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/q.sql", dir);
    write_file(path, "-- rows and their md5\n" ROWS_SQL ";\n");
    char *out = NULL, *err = NULL;

    const char *cmd[] = {"-d", tu_dsn(), "-F",      "tsv",  "--no-header",
                         "-c", ROWS_SQL, "--param", "3000", NULL};
    assert_int_equal(cli_run(cmd, &out, NULL), 0);
    expect_rows_md5(out, 3000);
    free(out);

    const char *file[] = {"-d", tu_dsn(), "-F",      "tsv",  "--no-header",
                          "-f", path,     "--param", "2500", NULL};
    assert_int_equal(cli_run(file, &out, NULL), 0);
    expect_rows_md5(out, 2500);
    free(out);

    g_stdin = path;
    const char *dash[] = {"-d", tu_dsn(), "-F",      "tsv",  "--no-header",
                          "-f", "-",      "--param", "2000", NULL};
    assert_int_equal(cli_run(dash, &out, NULL), 0);
    expect_rows_md5(out, 2000);
    free(out);
    const char *stdin_only[] = {"-d",          tu_dsn(),       "--format=tsv",
                                "--no-header", "--param=1500", NULL};
    assert_int_equal(cli_run(stdin_only, &out, NULL), 0);
    expect_rows_md5(out, 1500);
    free(out);
    g_stdin = "/dev/null";

    /* no query at all (stdin empty), a missing file, two queries */
    const char *empty[] = {"-d", tu_dsn(), NULL};
    assert_int_equal(cli_run(empty, NULL, &err), 2);
    assert_non_null(strstr(err, "-c SQL, -f FILE"));
    free(err);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.sql", dir);
    const char *nofile[] = {"-d", tu_dsn(), "-f", missing, NULL};
    assert_int_equal(cli_run(nofile, NULL, &err), 2);
    assert_non_null(strstr(err, "No such file"));
    free(err);
    const char *oldfmt[] = {"-f", "csv", "-c", "SELECT 1", NULL}; /* the old -f FORMAT */
    assert_int_equal(cli_run(oldfmt, NULL, &err), 2);
    free(err);
    const char *oldfmt2[] = {"-d", tu_dsn(), "-f", "csv", NULL};
    assert_int_equal(cli_run(oldfmt2, NULL, &err), 2);
    assert_non_null(strstr(err, "the output format is -F"));
    free(err);
    const char *two[] = {"-c", "SELECT 1", "-c", "SELECT 2", NULL};
    assert_int_equal(cli_run(two, NULL, &err), 2);
    assert_non_null(strstr(err, "one query per run"));
    free(err);
    unlink(path);
    rmdir(dir);
}

/* Parameters are values, whatever they look like; bare arguments are never
 * parameters or SQL. */
static void test_params_never_confused(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    const char *sqlish[] = {"-d",
                            tu_dsn(),
                            "-F",
                            "csv",
                            "--no-header",
                            "-c",
                            "SELECT $1::text, $2::text, $3::text IS NULL, "
                            "current_database() <> $4",
                            "--param",
                            "SELECT 1",
                            "--param",
                            "-h",
                            "--null-param",
                            "NULL",
                            "--param",
                            "NULL",
                            "--param",
                            "shop",
                            NULL};
    assert_int_equal(cli_run(sqlish, &out, &err), 0);
    assert_string_equal(out, "SELECT 1,-h,t,t\n");
    free(out);
    free(err);

#define REFUSED(want, ...)                                                                         \
    do {                                                                                           \
        const char *a[] = {__VA_ARGS__, NULL};                                                     \
        char *e = NULL, *o = NULL;                                                                 \
        int st_ = cli_run(a, &o, &e);                                                              \
        if (st_ != 2 || strstr(e, want) == NULL || o[0] != '\0')                                   \
            fail_msg("%s: exit %d, stderr %s (want 2 and \"%s\", no output)", #__VA_ARGS__, st_,   \
                     e, want);                                                                     \
        free(e), free(o);                                                                          \
    } while (0)
    /* the old call: SQL then parameters as bare arguments */
    REFUSED("use -c SQL or -f FILE", "-d", tu_dsn(), "SELECT $1::int", "42");
    REFUSED("use -c SQL or -f FILE", "SELECT 1");
    REFUSED("use -c SQL or -f FILE", "-c", "SELECT 1", "x", "SELECT 2");
    /* a parameter left bare would be taken for the database name */
    REFUSED("--param VALUE", "-c", "SELECT $1::int", "42");
    REFUSED("too many arguments", "-c", "SELECT 1", "db", "user", "extra");
    /* psql's -v/--set are variables, not parameters; the old flags */
    REFUSED("--param VALUE", "-v", "x=1", "-c", "SELECT 1");
    REFUSED("--param VALUE", "--set", "x=1", "-c", "SELECT 1");
    REFUSED("-d (--dbname)", "--dsn", tu_dsn(), "-c", "SELECT 1");
    REFUSED("--option chunk_rows=5", "-o", "chunk_rows=5", "-c", "SELECT 1"); /* the old -o */
    REFUSED("is not a port number", "-p", "SELECT 1");             /* the old -p (progress) */
    REFUSED("needs a value", "-c", "SELECT 1", "-h");              /* the old -h (help) */
    REFUSED("invalid option -- 'n'", "-n", "5", "-c", "SELECT 1"); /* the old --max-rows */
    REFUSED("Try \"pgspout --help\"", "--no-such-flag", "-c", "SELECT 1");
#undef REFUSED
}

/* Entries of dir other than . and .. (names joined by spaces). */
static void dir_entries(const char *dir, char *dst, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    dst[0] = '\0';
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        size_t l = strlen(dst);
        snprintf(dst + l, n - l, "%s%s", l ? " " : "", e->d_name);
    }
    closedir(d);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    tu_buf b = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        tu_buf_add(&b, buf, n);
    fclose(f);
    tu_buf_addc(&b, '\0');
    return b.data;
}

/* -o FILE: the whole result or nothing that looks like one. */
static void test_output_file_atomic(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_cli_out.XXXXXX", path[128], names[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/rows.tsv", dir);
    char *out = NULL, *err = NULL;

    /* success: the file holds every row, nothing else is left, stdout empty */
    const char *ok[] = {"-d", tu_dsn(), "-F",     "tsv",     "--no-header", "-o",
                        path, "-c",     ROWS_SQL, "--param", "5000",        NULL};
    assert_int_equal(cli_run(ok, &out, NULL), 0);
    assert_string_equal(out, "");
    free(out);
    char *text = read_text(path);
    expect_rows_md5(text, 5000);
    free(text);
    dir_entries(dir, names, sizeof names);
    assert_string_equal(names, "rows.tsv");

    /* an SQL error after rows were written: the old file stays as it was,
     * the temporary one is gone */
    write_file(path, "old\n");
    const char *fail[] = {
        "-d", tu_dsn(), "--chunk-rows", "100",
        "-o", path,     "-c",           "SELECT 1 / (g - 5000) FROM generate_series(1, 10000) g",
        NULL};
    assert_int_equal(cli_run(fail, NULL, &err), 1);
    assert_non_null(strstr(err, "22012"));
    assert_non_null(strstr(err, "left as it was"));
    free(err);
    text = read_text(path);
    assert_string_equal(text, "old\n");
    free(text);
    dir_entries(dir, names, sizeof names);
    assert_string_equal(names, "rows.tsv");

    /* and without an old file: no file at all */
    unlink(path);
    assert_int_equal(cli_run(fail, NULL, &err), 1);
    assert_non_null(strstr(err, "not written"));
    free(err);
    dir_entries(dir, names, sizeof names);
    assert_string_equal(names, "");

    /* SIGINT mid-stream: row 1 is written (flushed to the temporary file
     * while the server sleeps on row 3), then the interrupt: exit 130, no
     * file, the query cancelled */
    char tag[96], sql[320];
    make_tag(tag, sizeof tag, "outfile");
    snprintf(sql, sizeof sql,
             "SELECT g, repeat('x', 20000) AS pad, "
             "pg_sleep(CASE WHEN g > 2 THEN " LONG_SLEEP_S " ELSE 0 END), '%s' AS tag "
             "FROM generate_series(1, 5) g",
             tag);
    const char *slow[] = {"-d", tu_dsn(), "-F", "json", "--chunk-rows", "1", "-o",
                          path, "-c",     sql,  NULL};
    cli c;
    cli_start(&c, NULL, slow);
    wait_active(tag, &c);
    /* wait for rows in the temporary file: the stream is midway */
    double t0 = tu_now();
    for (;;) {
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *e;
        off_t size = 0;
        while ((e = readdir(d)) != NULL)
            if (strncmp(e->d_name, ".rows.tsv.pgspout-", 18) == 0) {
                char tmp[300];
                struct stat st;
                snprintf(tmp, sizeof tmp, "%s/%s", dir, e->d_name);
                if (stat(tmp, &st) == 0)
                    size = st.st_size;
            }
        closedir(d);
        if (size > 20000) /* row 1: the server holds row 2 back while row 3 sleeps */
            break;
        if (tu_now() - t0 > tu_slack(BOUND_STATE))
            kill_and_fail(&c, "waiting for rows in the temporary file", BOUND_STATE);
        tu_sleep_ms(20);
    }
    assert_int_equal(kill(c.pid, SIGINT), 0);
    assert_int_equal(cli_wait(&c, BOUND_EXIT, tag), 130);
    err = cli_stderr(&c);
    assert_non_null(strstr(err, "not written (interrupted"));
    free(err);
    cli_done(&c);
    dir_entries(dir, names, sizeof names);
    assert_string_equal(names, "");
    assert_not_running(tag);

    /* -o into a directory that does not exist: exit 1, nothing run */
    char nodir[160];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir.csv", dir);
    const char *bad[] = {"-d", tu_dsn(), "-o", nodir, "-c", "SELECT 1", NULL};
    assert_int_equal(cli_run(bad, NULL, &err), 1);
    assert_non_null(strstr(err, "temporary file"));
    free(err);
    rmdir(dir);
}

/* -F json: one valid array, rows as row_to_json renders them, for 0, 1 and
 * many rows; a failed stream never ends the array. */
static void test_json_array(void **state)
{
    (void)state;
    char *out = NULL, *err = NULL;
    const char *zero[] = {"-d", tu_dsn(), "-F", "json", "-c", "SELECT 1 AS g WHERE false", NULL};
    assert_int_equal(cli_run(zero, &out, NULL), 0);
    assert_string_equal(out, "[]\n");
    free(out);
    const char *one[] = {"-d", tu_dsn(), "--format", "json", "-c", "SELECT 1 AS g, 'a' AS h", NULL};
    assert_int_equal(cli_run(one, &out, NULL), 0);
    assert_string_equal(out, "[{\"g\":1,\"h\":\"a\"}]\n");
    free(out);
    const char *many[] = {
        "-d",      tu_dsn(), "-F",
        "json",    "-c",     "SELECT g, md5(g::text) AS h FROM generate_series(1, $1) g",
        "--param", "20000",  NULL};
    assert_int_equal(cli_run(many, &out, NULL), 0);
    char *want = tu_scalar(g_db,
                           "SELECT md5('[' || string_agg(row_to_json(t)::text, E',\\n' ORDER BY "
                           "g) || E']\\n') FROM (SELECT g, md5(g::text) AS h "
                           "FROM generate_series(1, 20000) g) t",
                           0, NULL);
    char got[33];
    tu_md5_str(out, strlen(out), got);
    assert_string_equal(got, want);
    free(want);
    free(out);
    const char *fail[] = {"-d",
                          tu_dsn(),
                          "-F",
                          "json",
                          "--chunk-rows",
                          "10",
                          "-c",
                          "SELECT 1 / (g - 500) AS x FROM generate_series(1, 1000) g",
                          NULL};
    assert_int_equal(cli_run(fail, &out, &err), 1);
    assert_true(out[0] == '[');
    assert_null(strchr(out, ']')); /* never a complete array */
    free(out);
    free(err);
}

/* NDJSON of columns whose types the command looks up (it opens the stream
 * with option json): a catalog's row type, arrays of it, of a domain, of
 * ranges and of box (';' between elements), bounds dropped - byte for byte
 * the server's row_to_json, one line each. */
static void test_ndjson_looked_up_types(void **state)
{
    (void)state;
#define LOOKED_UP_SQL                                                                              \
    "SELECT g, a, ARRAY[a] AS arr, ARRAY[a.amname::information_schema.sql_identifier] AS ids, "    \
    "ARRAY[int4range(g, NULL), 'empty'] AS r, ARRAY[box(point(g, g), point(0, 0)), NULL] AS b, "   \
    "('[' || g % 5 || ':' || g % 5 || ']={' || g || '}')::int[] AS bounded "                       \
    "FROM pg_am a, generate_series(1, 2000) g"
    char *out = NULL;
    const char *args[] = {"-d", tu_dsn(), "-c", LOOKED_UP_SQL " ORDER BY g, a.oid", NULL};
    assert_int_equal(cli_run(args, &out, NULL), 0);
    char *want = tu_scalar(g_db,
                           "SELECT md5(string_agg(row_to_json(t)::text || E'\\n', '' ORDER BY g, "
                           "(t.a).oid)) FROM (" LOOKED_UP_SQL ") t",
                           0, NULL);
    char got[33];
    tu_md5_str(out, strlen(out), got);
    assert_string_equal(got, want);
    free(want);
    free(out);
    const char *off[] = {"-d", tu_dsn(), "--option", "json=off", "-c", "SELECT 1", NULL};
    assert_int_equal(cli_run(off, NULL, NULL), 2); /* it follows --format */
#undef LOOKED_UP_SQL
}

static void test_help_version(void **state)
{
    (void)state;
    const char *help[] = {"--help", NULL};
    const char *qm[] = {"-?", NULL};
    const char *version[] = {"--version", NULL};
    const char *v[] = {"-V", NULL};
    char *out = NULL;
    assert_int_equal(cli_run(help, &out, NULL), 0);
    assert_non_null(strstr(out, "pgspout [OPTION]... [DBNAME [USERNAME]]"));
    assert_non_null(strstr(out, "-c, --command=SQL"));
    assert_non_null(strstr(out, "-h, --host=HOSTNAME"));
    free(out);
    assert_int_equal(cli_run(qm, &out, NULL), 0);
    assert_non_null(strstr(out, "-?, --help"));
    free(out);
    assert_int_equal(cli_run(version, &out, NULL), 0);
    char want[64];
    snprintf(want, sizeof want, "pgspout %s (transport ", pgspout_version());
    assert_true(strncmp(out, want, strlen(want)) == 0);
    free(out);
    assert_int_equal(cli_run(v, &out, NULL), 0);
    assert_true(strncmp(out, want, strlen(want)) == 0);
    free(out);
}

/* --progress in every format: both byte counts named, the bytes written
 * equal to what was written (exact below 1 kB), the rows still right. */
static void test_progress_every_format(void **state)
{
    (void)state;
    static const char *const fmts[] = {"ndjson", "csv", "tsv", "json"};
    for (size_t i = 0; i < 4; i++) {
        const char *args[] = {"-d",
                              tu_dsn(),
                              "-F",
                              fmts[i],
                              "--progress",
                              "-c",
                              "SELECT g FROM generate_series(1, 10) g",
                              NULL};
        char *out = NULL, *err = NULL, want[64];
        assert_int_equal(cli_run(args, &out, &err), 0);
        snprintf(want, sizeof want, "  %zu B written", strlen(out));
        if (strstr(err, want) == NULL || strstr(err, "of values received") == NULL ||
            strstr(err, "10 rows") == NULL)
            fail_msg("%s: progress %s, want \"%s\" and the bytes received", fmts[i], err, want);
        free(out);
        free(err);
    }
}

/* -W and the automatic prompt read the password on the terminal without
 * echoing it; -w never prompts. A role with a password (SCRAM over TCP in
 * the throwaway server's pg_hba.conf) proves the password is used. */
static char g_pw_role[64];

static int teardown_pw_role(void **state)
{
    (void)state;
    if (g_pw_role[0]) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", g_pw_role);
        free(tu_try_scalar(g_db, sql, 0, NULL));
    }
    return 0;
}

/* Run the CLI on a new pseudo-terminal, answer a prompt with answer (when
 * not NULL; "\003" is Ctrl-C), and return its exit status with everything
 * it printed on the terminal in *screen; *echo (when not NULL) says whether
 * the terminal echoes after it exited. */
static int run_on_pty_echo(const char *const *args, const char *answer, char **screen, int *echo)
{
    const char *argv[24];
    int n = 0;
    argv[n++] = g_cli;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int fd;
    pid_t pid = forkpty(&fd, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0); /* the query is not read from the terminal */
        execv(g_cli, (char *const *)argv);
        _exit(127);
    }
    tu_buf b = {0};
    int answered = answer == NULL;
    double t0 = tu_now();
    for (;;) {
        if (tu_now() - t0 > tu_slack(BOUND_EXIT)) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("pgspout on a terminal still running after %.0f s", BOUND_EXIT);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        char buf[512];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0)
            break; /* EIO: the child closed the terminal */
        tu_buf_add(&b, buf, (size_t)r);
        tu_buf_addc(&b, '\0');
        b.len--;
        if (!answered && strstr(b.data, "Password")) {
            /* the prompt turned echo off before it was printed */
            struct termios t;
            assert_int_equal(tcgetattr(fd, &t), 0);
            assert_int_equal(t.c_lflag & ECHO, 0);
            assert_int_equal(write(fd, answer, strlen(answer)), (ssize_t)strlen(answer));
            answered = 1;
        }
    }
    int st;
    waitpid(pid, &st, 0);
    if (echo) {
        struct termios t;
        assert_int_equal(tcgetattr(fd, &t), 0);
        *echo = (t.c_lflag & ECHO) != 0;
    }
    close(fd);
    tu_buf_addc(&b, '\0');
    *screen = b.data;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_on_pty(const char *const *args, const char *answer, char **screen)
{
    return run_on_pty_echo(args, answer, screen, NULL);
}

static void test_password_prompt(void **state)
{
    (void)state;
    server sv;
    server_get(&sv);
    char sql[160], secret[64], answer[80], wrong[] = "not-the-password\n";
    snprintf(g_pw_role, sizeof g_pw_role, "clitest_pw_%ld", (long)getpid());
    snprintf(secret, sizeof secret, "s3cret-%ld", (long)getpid());
    snprintf(answer, sizeof answer, "%s\n", secret);
    teardown_pw_role(NULL);
    snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN PASSWORD '%s'", g_pw_role, secret);
    exec_sql(g_db, sql);
    char want[128];
    snprintf(want, sizeof want, "%s\r\n", g_pw_role);
    char *screen = NULL;
    const char *forced[] = {"-h",
                            sv.host,
                            "-p",
                            sv.port,
                            "-U",
                            g_pw_role,
                            sv.db,
                            "-W",
                            "-F",
                            "csv",
                            "--no-header",
                            "-c",
                            "SELECT current_user",
                            NULL};
    assert_int_equal(run_on_pty(forced, answer, &screen), 0);
    assert_non_null(strstr(screen, "Password for user "));
    assert_non_null(strstr(screen, want));
    assert_null(strstr(screen, secret)); /* never echoed */
    free(screen);

    const char *asked[] = {"-h",  sv.host, "-p",  sv.port,       "-U", g_pw_role,
                           sv.db, "-F",    "csv", "--no-header", "-c", "SELECT current_user",
                           NULL};
    assert_int_equal(run_on_pty(asked, answer, &screen), 0);
    assert_non_null(strstr(screen, want));
    assert_null(strstr(screen, secret));
    free(screen);

    /* Ctrl-C at the prompt: exit 130 with the echo back on */
    int echo = 0;
    assert_int_equal(run_on_pty_echo(forced, "\003", &screen, &echo), 130);
    assert_true(echo);
    assert_non_null(strstr(screen, "interrupted"));
    free(screen);

    assert_int_equal(run_on_pty(forced, wrong, &screen), 3);
    assert_non_null(strstr(screen, "password authentication failed"));
    free(screen);

    const char *never[] = {"-h",  sv.host, "-p", sv.port,    "-U", g_pw_role,
                           sv.db, "-w",    "-c", "SELECT 1", NULL};
    assert_int_equal(run_on_pty(never, NULL, &screen), 3);
    assert_null(strstr(screen, "Password"));
    assert_non_null(strstr(screen, "no password supplied"));
    free(screen);
    server_free(&sv);
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
        cmocka_unit_test(test_connection_flags),
        cmocka_unit_test(test_query_sources),
        cmocka_unit_test(test_params_never_confused),
        cmocka_unit_test(test_output_file_atomic),
        cmocka_unit_test(test_json_array),
        cmocka_unit_test(test_ndjson_looked_up_types),
        cmocka_unit_test(test_help_version),
        cmocka_unit_test(test_progress_every_format),
        cmocka_unit_test_teardown(test_password_prompt, teardown_pw_role),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
