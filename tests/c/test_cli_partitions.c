/* test_cli_partitions.c - pgspout --partitions N --table T -o DIR|PATTERN
 * (issue 16): the files, concatenated in partition order, are the table as
 * of one snapshot while another connection commits changes; the set is
 * written all or nothing; usage and name errors are refused; --progress is
 * one line for all the partitions.
 *   test_cli_partitions PATH-OF-pgspout      (needs PGSPOUT_TEST_DSN) */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

extern char **environ;
static const char *g_cli;
static char g_dir[64]; /* a fresh output directory per test */

/* Read a whole file (malloc'd, "" if missing). */
static char *slurp(const char *path, size_t *len)
{
    tu_buf b = {0};
    FILE *f = fopen(path, "rb");
    char buf[65536];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        tu_buf_add(&b, buf, n);
    if (f)
        fclose(f);
    if (len)
        *len = b.len;
    return b.data ? b.data : strdup("");
}

/* Run the CLI with -d DSN and args; exit status, stderr in *err. */
static int run(const char *const *args, char **err)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = g_cli;
    argv[n++] = "-d";
    argv[n++] = tu_dsn();
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char errpath[300];
    snprintf(errpath, sizeof errpath, "%s.stderr", g_dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, g_cli, &fa, NULL, (char **)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    char *e = slurp(errpath, NULL);
    unlink(errpath);
    if (err)
        *err = e;
    else
        free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The files of g_dir, sorted by name, concatenated; their count in *nfiles;
 * a temporary (dot) file left behind fails the test. */
static char *concat_dir(int *nfiles)
{
    struct dirent **names;
    int n = scandir(g_dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    tu_buf b = {0};
    *nfiles = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
            if (name[0] == '.')
                fail_msg("a temporary file was left behind: %s", name);
            char path[600];
            snprintf(path, sizeof path, "%s/%s", g_dir, name);
            size_t len;
            char *data = slurp(path, &len);
            tu_buf_add(&b, data, len);
            free(data);
            (*nfiles)++;
        }
        free(names[i]);
    }
    free(names);
    return b.data ? b.data : strdup("");
}

static void exec_ok(pgspout_conn *c, const char *sql)
{
    pgspout_stream *s;
    const pgspout_row *row;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK)
        ;
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", sql, s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    pgspout_stream_close(s);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/pgspout-cliparts-%ld", (long)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    assert_int_equal(system(cmd), 0);
    pgspout_conn *c = tu_connect();
    exec_ok(c, "DROP TABLE IF EXISTS cli_part");
    exec_ok(c, "CREATE TABLE cli_part (id bigint PRIMARY KEY, v int NOT NULL, pad text)");
    exec_ok(c,
            "INSERT INTO cli_part SELECT g, 1, repeat('p', 30) FROM generate_series(1, 20000) g");
    exec_ok(c, "ANALYZE cli_part");
    pgspout_conn_close(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ the writer */

typedef struct writer {
    pthread_t th;
    atomic_int stop, batches;
    int moves; /* 1: only moves that keep count and sum(v) (UPDATE of the id) */
    char err[256];
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    pgspout_conn *c;
    if (pgspout_connect(tu_dsn(), &c) != PGSPOUT_OK) {
        snprintf(w->err, sizeof w->err, "connect: %s", pgspout_conn_error(c));
        pgspout_conn_close(c);
        return NULL;
    }
    static const char *const moves[] = {
        /* rows leave their block for the table's end: without one snapshot a
         * block range read earlier misses them, a later one reads them twice */
        "UPDATE cli_part SET id = id + 1000000, pad = pad || 'm' WHERE id IN (SELECT id FROM "
        "cli_part WHERE id < 1000000 ORDER BY id LIMIT 25 OFFSET ($1::int * 37) % 15000)"};
    static const char *const changes[] = {
        "INSERT INTO cli_part SELECT 2000000 + $1::int * 100 + g, 2, 'new' FROM "
        "generate_series(1, 50) g",
        "DELETE FROM cli_part WHERE id IN (SELECT id FROM cli_part WHERE id < 1000000 AND id % 89 "
        "= $1::int % 89 LIMIT 20)"};
    for (int b = 0; !atomic_load(&w->stop) && b < 3000; b++) {
        char n[32];
        snprintf(n, sizeof n, "%d", b);
        const char *p[] = {n};
        int k = w->moves ? 1 : 2;
        for (int i = 0; i < k; i++) {
            const char *sql = w->moves ? moves[i] : changes[i];
            pgspout_stream *s;
            const pgspout_row *row;
            int rc = pgspout_stream_open(c, sql, 1, p, NULL, &s);
            while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK)
                ;
            if (rc != PGSPOUT_DONE && w->err[0] == '\0')
                snprintf(w->err, sizeof w->err, "%s", s ? pgspout_stream_error(s) : "open");
            pgspout_stream_close(s);
        }
        atomic_fetch_add(&w->batches, 1);
    }
    pgspout_conn_close(c);
    return NULL;
}

static void writer_start(writer *w, int moves)
{
    memset(w, 0, sizeof *w);
    w->moves = moves;
    assert_int_equal(pthread_create(&w->th, NULL, writer_main, w), 0);
    while (atomic_load(&w->batches) < 2 && w->err[0] == '\0')
        tu_sleep_ms(5);
}

static int writer_stop(writer *w)
{
    atomic_store(&w->stop, 1);
    pthread_join(w->th, NULL);
    if (w->err[0])
        fail_msg("writer: %s", w->err);
    return atomic_load(&w->batches);
}

/* ------------------------------------------------------------------ tests */

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* The CLI's own snapshot while rows move between blocks: the files hold
 * every row exactly once (count and sum(v) are what every committed state
 * has; no id twice). */
static void test_own_snapshot_while_rows_move(void **state)
{
    (void)state;
    writer w;
    writer_start(&w, 1);
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s/cli-{}.tsv", g_dir);
    const char *args[] = {
        "--partitions", "4",   "--table",     "cli_part",     "--column", "id", "--column", "v",
        "-F",           "tsv", "--no-header", "--chunk-rows", "100",      "-o", pattern,    NULL};
    char *err;
    int st = run(args, &err);
    int batches = writer_stop(&w);
    if (st != 0)
        fail_msg("exit %d: %s", st, err);
    free(err);
    assert_true(batches >= 2);
    int nfiles;
    char *all = concat_dir(&nfiles);
    assert_int_equal(nfiles, 4);
    char path[400];
    snprintf(path, sizeof path, "%s/cli-000.tsv", g_dir);
    assert_int_equal(access(path, R_OK), 0);
    /* count, sum(v), distinct ids */
    long rows = 0, vsum = 0;
    size_t cap = 32768, nid = 0;
    long long *ids = malloc(cap * sizeof *ids);
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        ids[nid++] = strtoll(line, NULL, 10);
        vsum += strtol(tab + 1, NULL, 10);
        rows++;
        assert_true(nid < cap);
    }
    assert_int_equal(rows, 20000);
    assert_int_equal(vsum, 20000);
    /* no id twice: sort and compare neighbours */
    qsort(ids, nid, sizeof *ids, cmp_ll);
    for (size_t i = 1; i < nid; i++)
        if (ids[i] == ids[i - 1])
            fail_msg("id %lld read twice", ids[i]);
    free(ids);
    free(all);
}

/* A snapshot the test holds (--option snapshot=ID) while inserts and
 * deletes commit: block partitions concatenated in order are, byte for
 * byte, the snapshot's rows in ctid order as the server renders them; the
 * table now differs. Key partitions: the same rows (sorted). */
static void test_given_snapshot_checksum(void **state)
{
    (void)state;
    pgspout_snapshot *snap;
    assert_int_equal(pgspout_snapshot_export(tu_dsn(), NULL, &snap), PGSPOUT_OK);
    char opt[128];
    snprintf(opt, sizeof opt, "snapshot=%s", pgspout_snapshot_id(snap));
    writer w;
    writer_start(&w, 0);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/", g_dir);
    const char *blocks[] = {"--partitions", "3",   "--table",  "public.cli_part",
                            "--column",     "id",  "--column", "pad",
                            "-F",           "csv", "--option", opt,
                            "-o",           dir,   NULL};
    char *err;
    int st = run(blocks, &err);
    if (st != 0)
        fail_msg("exit %d: %s", st, err);
    free(err);
    int nfiles;
    char *all = concat_dir(&nfiles);
    assert_int_equal(nfiles, 3);
    char got[33];
    /* each file has its own header line: drop them for the comparison */
    tu_buf body = {0};
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n"))
        if (strcmp(line, "id,pad") != 0) {
            tu_buf_adds(&body, line);
            tu_buf_addc(&body, '\n');
        }
    tu_md5_str(body.data, body.len, got);
    free(all);
    tu_buf_free(&body);

    pgspout_conn *c = tu_connect();
    pgspout_options *o = tu_opts("snapshot", pgspout_snapshot_id(snap), NULL);
    static const char sql[] =
        "SELECT md5(string_agg(id || ',' || pad || E'\\n', '' ORDER BY ctid)) FROM cli_part";
    pgspout_stream *s;
    const pgspout_row *row;
    assert_int_equal(pgspout_stream_open(c, sql, 0, NULL, o, &s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_OK);
    char want[33];
    snprintf(want, sizeof want, "%s", pgspout_row_value(row, 0, NULL));
    pgspout_stream_close(s);

    /* key ranges, with the bounds given */
    char kdir[320];
    snprintf(kdir, sizeof kdir, "%s/k-{}.ndjson", g_dir);
    const char *keys[] = {"--partitions", "3",  "--table", "cli_part", "--column", "id",
                          "--key",        "id", "--bound", "5000",     "--bound",  "12000",
                          "--option",     opt,  "-o",      kdir,       NULL};
    st = run(keys, &err);
    if (st != 0)
        fail_msg("exit %d: %s", st, err);
    free(err);
    int batches = writer_stop(&w);
    assert_true(batches >= 2);
    char path[400];
    long long sum = 0, n = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/k-%03d.ndjson", g_dir, i);
        char *data = slurp(path, NULL);
        for (char *p = strstr(data, "{\"id\":"); p; p = strstr(p + 1, "{\"id\":")) {
            long long id = strtoll(p + 6, NULL, 10);
            if (i == 0)
                assert_true(id < 5000);
            if (i == 2)
                assert_true(id >= 12000);
            sum += id;
            n++;
        }
        free(data);
    }
    char keysum[64];
    snprintf(keysum, sizeof keysum, "%lld %lld", n, sum);
    assert_int_equal(
        pgspout_stream_open(c, "SELECT count(*) || ' ' || sum(id) FROM cli_part", 0, NULL, o, &s),
        PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &row), PGSPOUT_OK);
    assert_string_equal(keysum, pgspout_row_value(row, 0, NULL));
    pgspout_stream_close(s);

    char *now = tu_scalar(c, sql, 0, NULL);
    print_message("files %s\nsnapshot %s\nnow %s\n", got, want, now);
    assert_string_equal(got, want);
    assert_string_not_equal(got, now);
    free(now);

    /* once the holder is gone: a clear error, no files */
    pgspout_snapshot_close(snap);
    char late[320];
    snprintf(late, sizeof late, "%s/late-{}.csv", g_dir);
    const char *after[] = {"--partitions", "2",  "--table", "cli_part", "--option", opt,
                           "-o",           late, NULL};
    assert_int_equal(run(after, &err), 1);
    assert_non_null(strstr(err, "could not import snapshot"));
    free(err);
    snprintf(path, sizeof path, "%s/late-000.csv", g_dir);
    assert_int_not_equal(access(path, F_OK), 0);
    pgspout_options_free(o);
    pgspout_conn_close(c);
}

/* All or nothing: one partition fails (division by zero in its rows), the
 * files already there stay as they were and no new one appears. */
static void test_all_or_nothing(void **state)
{
    (void)state;
    char pattern[300], path[400];
    snprintf(pattern, sizeof pattern, "%s/t-{}.csv", g_dir);
    snprintf(path, sizeof path, "%s/t-001.csv", g_dir);
    FILE *f = fopen(path, "w");
    fputs("old content\n", f);
    fclose(f);
    const char *args[] = {"--partitions",          "4",  "--table", "cli_part", "--where",
                          "1 / (id - 15000) > -2", "-o", pattern,   NULL};
    char *err;
    assert_int_equal(run(args, &err), 1);
    assert_non_null(strstr(err, "division by zero"));
    assert_non_null(strstr(err, "no partition file written"));
    free(err);
    int nfiles;
    char *all = concat_dir(&nfiles);
    assert_int_equal(nfiles, 1);
    assert_string_equal(all, "old content\n");
    free(all);
    /* the same with a good condition and its parameter replaces it */
    const char *good[] = {"--partitions", "4",  "--table",  "cli_part", "--where",     "id <= $1",
                          "--param",      "10", "--column", "id",       "--no-header", "-F",
                          "csv",          "-o", pattern,    NULL};
    assert_int_equal(run(good, &err), 0);
    free(err);
    all = concat_dir(&nfiles);
    assert_int_equal(nfiles, 4);
    assert_string_equal(all, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n");
    free(all);
}

static void test_refused(void **state)
{
    (void)state;
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s/x-{}.csv", g_dir);
    static const struct {
        const char *args[16];
        int status;
        const char *says;
    } cases[] = {
        {{"--partitions", "2", "-o", "PAT", NULL}, 2, "--partitions needs --table"},
        {{"--table", "cli_part", "-o", "PAT", NULL}, 2, "go with --partitions"},
        {{"--partitions", "2", "--table", "cli_part", NULL}, 2, "one file per partition"},
        {{"--partitions", "2", "--table", "cli_part", "-o", "/tmp/one-file.csv", NULL},
         2,
         "a directory or a PATTERN"},
        {{"--partitions", "0", "--table", "cli_part", "-o", "PAT", NULL}, 2, "from 1 to 10000"},
        {{"--partitions", "2", "--table", "cli_part", "-c", "SELECT 1", "-o", "PAT", NULL},
         2,
         "-c and -f do not go"},
        {{"--partitions", "3", "--table", "cli_part", "--key", "id", "--bound", "5", "-o", "PAT",
          NULL},
         2,
         "N-1 --bound"},
        {{"--partitions", "2", "--table", "cli_part; DROP TABLE cli_part", "-o", "PAT", NULL},
         1,
         "is not a table name"},
        {{"--partitions", "2", "--table", "no_such_table", "-o", "PAT", NULL}, 1, "no table"},
        {{"--partitions", "2", "--table", "cli_part", "--column", "id; DROP TABLE cli_part", "-o",
          "PAT", NULL},
         1,
         "no column named"},
        {{"--partitions", "2", "--table", "cli_part", "--key", "nope", "-o", "PAT", NULL},
         1,
         "no column named"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[16];
        int k = 0;
        for (; cases[i].args[k]; k++)
            args[k] = strcmp(cases[i].args[k], "PAT") == 0 ? pattern : cases[i].args[k];
        args[k] = NULL;
        char *err;
        int st = run(args, &err);
        if (st != cases[i].status || strstr(err, cases[i].says) == NULL)
            fail_msg("case %zu: exit %d (want %d), stderr: %s", i, st, cases[i].status, err);
        free(err);
    }
    int nfiles;
    free(concat_dir(&nfiles));
    assert_int_equal(nfiles, 0);
    pgspout_conn *c = tu_connect();
    tu_expect_scalar(c, "SELECT count(*) FROM cli_part", "20000");
    pgspout_conn_close(c);
}

/* ------------------------------------------------------------- progress */

/* b bytes as the progress line writes them (the CLI's out_human_bytes) */
static void human(char *dst, size_t n, double b)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(dst, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

/* The number just before what in line (what must be there). */
static unsigned long long number_before(const char *line, const char *what)
{
    const char *p = strstr(line, what);
    if (p == NULL)
        fail_msg("no \"%s\" in the progress line: %s", what, line);
    while (p > line && p[-1] >= '0' && p[-1] <= '9')
        p--;
    return strtoull(p, NULL, 10);
}

/* The files' total size. */
static long long dir_bytes(void)
{
    struct dirent **names;
    int n = scandir(g_dir, &names, NULL, alphasort);
    long long total = 0;
    for (int i = 0; i < n; i++) {
        char path[600];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(path, &st) == 0)
            total += st.st_size;
        free(names[i]);
    }
    free(names);
    return total;
}

/* --progress with --partitions: every line is one line for all the
 * partitions (never one per partition), its counts only grow, and the last
 * one - the only one with 4/4 done - has the totals: every row, the bytes
 * of values received (the server's sum of the values' lengths), the bytes
 * written (the files' sizes), the bar full. Without --expected-rows the
 * bar comes from the planner's estimates of the partitions' queries. The
 * streams' max_rate makes the run last at least 0.5 s, against lines every
 * 20 ms: there are lines before the last. */
static void test_progress_one_line(void **state)
{
    (void)state;
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s/p-{}.csv", g_dir);
    const char *args[] = {"--partitions",
                          "4",
                          "--table",
                          "cli_part",
                          "--column",
                          "id",
                          "--column",
                          "v",
                          "-F",
                          "csv",
                          "--no-header",
                          "--chunk-rows",
                          "100",
                          "--progress",
                          "--expected-rows",
                          "20000",
                          "--option",
                          "progress_interval=20ms",
                          "--option",
                          "max_rate=10000",
                          "-o",
                          pattern,
                          NULL};
    char *err;
    int st = run(args, &err);
    if (st != 0)
        fail_msg("exit %d: %s", st, err);
    print_message("%s", err);
    int nlines = 0, nfinal = 0;
    unsigned long long last_rows = 0, last_done = 0;
    char *last = NULL;
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n")) {
        if (strstr(line, "/4 partitions done") == NULL || strncmp(line, "[", 1) != 0)
            fail_msg("not one line for all the partitions: %s", line);
        unsigned long long rows = number_before(line, " rows  ");
        unsigned long long done = number_before(line, "/4 partitions done");
        assert_true(rows >= last_rows);
        assert_true(done >= last_done);
        last_rows = rows, last_done = done;
        nfinal += done == 4;
        nlines++;
        last = line;
    }
    assert_true(nlines >= 2);
    assert_int_equal(nfinal, 1);
    assert_non_null(last);
    assert_int_equal(last_done, 4);
    assert_int_equal(last_rows, 20000);
    assert_non_null(strstr(last, "[####################] 100%  20000 rows  "));
    assert_null(strstr(last, "ETA"));
    assert_null(strstr(last, "failed"));
    char want[64], line_part[96];
    human(want, sizeof want, (double)dir_bytes());
    snprintf(line_part, sizeof line_part, "  %s written  ", want);
    if (strstr(last, line_part) == NULL)
        fail_msg("written: want %s in: %s", want, last);
    pgspout_conn *c = tu_connect();
    char *vb =
        tu_scalar(c, "SELECT sum(length(id::text) + length(v::text)) FROM cli_part", 0, NULL);
    human(want, sizeof want, strtod(vb, NULL));
    snprintf(line_part, sizeof line_part, "  %s of values received ", want);
    if (strstr(last, line_part) == NULL)
        fail_msg("values received: want %s in: %s", want, last);
    free(vb);
    pgspout_conn_close(c);
    free(err);
    int nfiles;
    char *all = concat_dir(&nfiles);
    assert_int_equal(nfiles, 4);
    free(all);

    /* the planner's estimates: a bar without --expected-rows */
    snprintf(pattern, sizeof pattern, "%s/q-{}.csv", g_dir);
    const char *est[] = {"--partitions", "3",  "--table", "cli_part",
                         "--progress",   "-o", pattern,   NULL};
    st = run(est, &err);
    if (st != 0)
        fail_msg("exit %d: %s", st, err);
    print_message("%s", err);
    assert_non_null(strstr(err, "3/3 partitions done"));
    assert_non_null(strstr(err, "20000 rows  "));
    assert_int_equal(err[0], '[');
    assert_non_null(strstr(err, "%  20000 rows"));
    free(err);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli_partitions PATH-OF-pgspout\n");
        return 2;
    }
    g_cli = argv[1];
    int gate = tu_db_gate("test_cli_partitions");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_own_snapshot_while_rows_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_given_snapshot_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress_one_line, setup, teardown),
    };
    return cmocka_run_group_tests_name("cli_partitions", tests, NULL, NULL);
}
