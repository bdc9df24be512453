/* partitions.c - pgspout --partitions N --table T -o DIR_OR_PATTERN.
 *
 * One snapshot is exported (pgspout_snapshot_export) and held until every
 * partition ended; the plan (pgspout_plan_make) splits the table into block
 * or key ranges; each partition runs on its own connection, in its own
 * thread, as an ordinary stream importing the snapshot, into a temporary
 * file beside its target. The files are renamed into place only when every
 * partition ended well, so the set is all there or left as it was: the
 * concatenation of the files in partition order is the whole table as of
 * the snapshot. A failed partition cancels the others. With --progress the
 * main thread, which only waits for the partitions otherwise, prints one
 * line for all of them together (progress_line). */
#include "partitions.h"

#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_QUERY = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

typedef struct part {
    pthread_t th;
    int index;
    const parts_args *a;
    const pgspout_plan *plan;
    char *target, *tmp;
    pgspout_stream *s; /* under g_plock while the partition streams */
    int rc;            /* PGSPOUT_DONE, or the code that ended it */
    int write_err;     /* errno of a failed write, 0 if none */
    int ended;         /* under g_plock: the thread is done with it */
    char msg[512];
    char sqlstate[6];
    /* for the progress line, read by the main thread while it runs: rows
     * delivered, bytes of values received, bytes written */
    _Atomic unsigned long long rows, received, written;
} part;

static pthread_mutex_t g_plock = PTHREAD_MUTEX_INITIALIZER;
static part *g_parts; /* under g_plock */
static int g_nparts;
static int g_cancelled; /* under g_plock: a signal or a failed partition */
/* --progress: g_pcond (CLOCK_MONOTONIC) wakes the main thread when a
 * partition ends or the rows of all reach the next multiple of
 * g_progress_rows (g_progress_due, under g_plock) */
static pthread_cond_t g_pcond;
static int g_nended, g_progress_due;
static unsigned long long g_progress_rows;
static _Atomic unsigned long long g_rows_all;

int parts_output_ok(const char *output, const char **why)
{
    if (output == NULL || strcmp(output, "-") == 0) {
        *why = "--partitions writes one file per partition: give -o DIR (a directory) or -o "
               "PATTERN with {} where the partition number goes (e.g. -o out/t-{}.csv)";
        return -1;
    }
    const char *brace = strstr(output, "{}");
    struct stat st;
    int dir = output[strlen(output) - 1] == '/' || (stat(output, &st) == 0 && S_ISDIR(st.st_mode));
    if (brace && strstr(brace + 2, "{}")) {
        *why = "-o PATTERN takes one {}";
        return -1;
    }
    if (!brace && !dir) {
        *why = "with --partitions, -o is a directory or a PATTERN with {} for the partition number";
        return -1;
    }
    if (brace && strchr(brace, '/')) {
        *why = "-o PATTERN: the {} goes in the file name, not in a directory";
        return -1;
    }
    return 0;
}

static const char *const ext[] = {"ndjson", "csv", "tsv", "json"};

/* Target i of n: PATTERN with {} replaced, or DIR/part-NNN.EXT; numbers are
 * zero-padded to one width so that names sort in partition order. */
static char *target_name(const char *output, int fmt, int i, int n)
{
    int width = 1;
    for (int m = n - 1; m >= 10; m /= 10)
        width++;
    if (width < 3)
        width = 3;
    char num[32];
    snprintf(num, sizeof num, "%0*d", width > 5 ? 5 : width, i); /* n <= 10000 */
    const char *brace = strstr(output, "{}");
    char *out = NULL;
    int rc;
    if (brace)
        rc = asprintf(&out, "%.*s%s%s", (int)(brace - output), output, num, brace + 2);
    else
        rc = asprintf(&out, "%s%spart-%s.%s", output, output[strlen(output) - 1] == '/' ? "" : "/",
                      num, ext[fmt]);
    return rc < 0 ? NULL : out;
}

/* A temporary file beside target, with target's mode if it exists (a
 * regular file) or 0666 & ~umask. NULL after setting p->msg. */
static FILE *open_tmp(part *p)
{
    struct stat st;
    int exists = stat(p->target, &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) {
        snprintf(p->msg, sizeof p->msg, "%s exists and is not a regular file", p->target);
        return NULL;
    }
    char *d = strdup(p->target), *b = strdup(p->target);
    if (d == NULL || b == NULL ||
        asprintf(&p->tmp, "%s/.%s.pgspout-XXXXXX", dirname(d), basename(b)) < 0) {
        free(d), free(b);
        p->tmp = NULL;
        snprintf(p->msg, sizeof p->msg, "out of memory");
        return NULL;
    }
    free(d), free(b);
    mode_t mask = umask(0);
    umask(mask);
    pthread_mutex_lock(&g_plock);
    int fd = mkstemp(p->tmp);
    int err = errno;
    if (fd < 0) {
        free(p->tmp);
        p->tmp = NULL;
    }
    pthread_mutex_unlock(&g_plock);
    if (fd < 0) {
        snprintf(p->msg, sizeof p->msg, "cannot create a temporary file beside %s: %s", p->target,
                 strerror(err));
        return NULL;
    }
    fchmod(fd, exists ? st.st_mode & 07777 : 0666 & ~mask);
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        snprintf(p->msg, sizeof p->msg, "%s: %s", p->tmp, strerror(errno));
        close(fd);
    }
    return f;
}

/* Stop the other partitions: one failed, or a signal came. */
static void cancel_all_locked(void)
{
    g_cancelled = 1;
    for (int i = 0; i < g_nparts; i++)
        if (g_parts[i].s)
            pgspout_stream_cancel(g_parts[i].s);
}

void parts_cancel(void)
{
    pthread_mutex_lock(&g_plock);
    cancel_all_locked();
    pthread_mutex_unlock(&g_plock);
}

void parts_unlink(void)
{
    pthread_mutex_lock(&g_plock);
    for (int i = 0; i < g_nparts; i++)
        if (g_parts[i].tmp)
            unlink(g_parts[i].tmp);
    pthread_mutex_unlock(&g_plock);
}

/* ------------------------------------------------------------ progress */

/* After a chunk of n rows of p (n = 0: at the end): its counters for the
 * progress line, and a wake-up when the rows of all partitions reach the
 * next multiple of progress_rows. Partition thread. */
static void progress_count(part *p, pgspout_stream *s, unsigned long long n)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    if (pgspout_stream_stats(s, &st) == PGSPOUT_OK)
        atomic_store(&p->received, st.bytes_received);
    atomic_store(&p->written, out_bytes_written);
    atomic_fetch_add(&p->rows, n);
    unsigned long long all = atomic_fetch_add(&g_rows_all, n) + n;
    if (n && g_progress_rows && all / g_progress_rows != (all - n) / g_progress_rows) {
        pthread_mutex_lock(&g_plock);
        g_progress_due = 1;
        pthread_cond_signal(&g_pcond);
        pthread_mutex_unlock(&g_plock);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One line for all the partitions: rows, rows/s, bytes of values received
 * and their rate, bytes written (as the single-stream line counts them),
 * how many partitions ended well (and how many did not) and the elapsed
 * time; with a known total, a bar, a percentage and, until the end, an ETA.
 * Rates are averages since the start. Main thread. */
static void progress_line(const part *parts, int n, long long total, double elapsed, int final,
                          int tty)
{
    unsigned long long rows = 0, received = 0, written = 0;
    int done = 0, failed = 0;
    pthread_mutex_lock(&g_plock);
    for (int i = 0; i < n; i++) {
        const part *p = &parts[i];
        rows += atomic_load(&p->rows);
        received += atomic_load(&p->received);
        written += atomic_load(&p->written);
        if (p->ended && p->rc == PGSPOUT_DONE && !p->write_err)
            done++;
        else if (p->ended)
            failed++;
    }
    pthread_mutex_unlock(&g_plock);
    double rps = elapsed > 0 ? (double)rows / elapsed : 0;
    char bytes[32], rate[32], out[32], head[48] = "", eta[32] = "", bad[32] = "";
    out_human_bytes(bytes, sizeof bytes, (double)received);
    out_human_bytes(rate, sizeof rate, elapsed > 0 ? (double)received / elapsed : 0);
    out_human_bytes(out, sizeof out, (double)written);
    if (total > 0) {
        double frac = (double)rows / (double)total;
        if (frac > 1)
            frac = 1;
        int w = 20, fill = (int)(frac * w + 0.5);
        head[0] = '[';
        for (int i = 0; i < w; i++)
            head[1 + i] = i < fill ? '#' : '.';
        snprintf(head + w + 1, sizeof head - (size_t)w - 1, "] %3.0f%%  ", frac * 100);
        if (!final && rps > 0 && (unsigned long long)total > rows)
            snprintf(eta, sizeof eta, "  ETA %.0fs",
                     (double)((unsigned long long)total - rows) / rps);
    }
    if (failed)
        snprintf(bad, sizeof bad, ", %d failed", failed);
    fprintf(stderr,
            "%s%s%llu rows  %.0f rows/s  %s of values received (%s/s)  %s written  %d/%d "
            "partitions done%s  %.1fs%s%s",
            tty ? "\r" : "", head, rows, rps, bytes, rate, out, done, n, bad, elapsed, eta,
            tty ? "\033[K" : "\n");
    if (final && tty)
        fputc('\n', stderr);
}

/* The total for the bar: expected_rows, else the planner's estimates of the
 * partitions' queries added up (-1 when one is unknown). */
static long long progress_total(const parts_args *a, const pgspout_plan *plan)
{
    long long total = strtoll(pgspout_options_get(a->opts, "expected_rows"), NULL, 10);
    if (total > 0 || a->estimate == NULL)
        return total > 0 ? total : -1;
    total = 0;
    for (int i = 0; i < pgspout_plan_npartitions(plan) && total >= 0; i++) {
        long long est = a->estimate(a->conn, pgspout_plan_sql(plan, i),
                                    pgspout_plan_nparams(plan, i), pgspout_plan_params(plan, i));
        total = est < 0 ? -1 : total + est;
    }
    return total;
}

/* t + ms */
static void ts_add_ms(struct timespec *t, long long ms)
{
    long long ns = t->tv_nsec + (ms % 1000) * 1000000LL;
    t->tv_sec += (time_t)(ms / 1000 + ns / 1000000000LL);
    t->tv_nsec = (long)(ns % 1000000000LL);
}

/* Print the line every progress_interval (and when progress_count asks)
 * until every started partition has ended. Main thread. */
static void progress_wait(const parts_args *a, const part *parts, int n, int started,
                          long long total, double t0)
{
    long long interval_ms = strtoll(pgspout_options_get(a->opts, "progress_interval"), NULL, 10);
    struct timespec next, now;
    clock_gettime(CLOCK_MONOTONIC, &next);
    if (interval_ms > 0)
        ts_add_ms(&next, interval_ms);
    pthread_mutex_lock(&g_plock);
    while (g_nended < started) {
        int timed_out = 0;
        while (g_nended < started && !g_progress_due && !timed_out)
            timed_out = (interval_ms > 0 ? pthread_cond_timedwait(&g_pcond, &g_plock, &next)
                                         : pthread_cond_wait(&g_pcond, &g_plock)) == ETIMEDOUT;
        if (g_nended == started)
            break;
        if (timed_out) { /* the next deadline after now: a late wake-up skips, never bursts */
            clock_gettime(CLOCK_MONOTONIC, &now);
            while (next.tv_sec < now.tv_sec ||
                   (next.tv_sec == now.tv_sec && next.tv_nsec <= now.tv_nsec))
                ts_add_ms(&next, interval_ms);
        }
        g_progress_due = 0;
        pthread_mutex_unlock(&g_plock);
        progress_line(parts, n, total, now_s() - t0, 0, a->tty);
        pthread_mutex_lock(&g_plock);
    }
    pthread_mutex_unlock(&g_plock);
}

static void *part_main(void *arg)
{
    part *p = arg;
    const parts_args *a = p->a;
    pgspout_conn *conn = NULL;
    pgspout_stream *s = NULL;
    FILE *f = open_tmp(p);
    p->rc = PGSPOUT_EINTERNAL;
    if (f == NULL) {
        p->write_err = errno ? errno : EIO;
        goto out;
    }
    p->rc = pgspout_connect_opts(a->conninfo, a->opts, &conn);
    if (p->rc != PGSPOUT_OK) {
        snprintf(p->msg, sizeof p->msg, "%s", conn ? pgspout_conn_error(conn) : "");
        goto out;
    }
    pthread_mutex_lock(&g_plock);
    int stop = g_cancelled;
    pthread_mutex_unlock(&g_plock);
    if (stop) {
        p->rc = PGSPOUT_ECANCELLED;
        goto out;
    }
    p->rc = pgspout_plan_open(conn, p->plan, p->index, a->opts, &s);
    pthread_mutex_lock(&g_plock);
    p->s = s;
    if (g_cancelled && s) /* a cancel that came while it opened */
        pgspout_stream_cancel(s);
    pthread_mutex_unlock(&g_plock);
    if (p->rc != PGSPOUT_OK)
        goto out;
    if (out_header(f, a->fmt, a->header, s) != 0) {
        p->write_err = errno;
        goto out;
    }
    for (;;) {
        const pgspout_chunk *c;
        int r = pgspout_stream_next_chunk(s, 0, &c);
        if (r != PGSPOUT_OK) {
            p->rc = r;
            if (r == PGSPOUT_DONE && out_footer(f, a->fmt) != 0)
                p->write_err = errno;
            break;
        }
        unsigned long long n = (unsigned long long)pgspout_chunk_nrows(c);
        int w = out_chunk(f, a->fmt, s, c, &p->rc);
        if (w == OUT_ELIB)
            break;
        if (w != 0) {
            p->write_err = errno;
            break;
        }
        if (a->progress)
            progress_count(p, s, n);
    }
    if (p->rc == PGSPOUT_DONE && !p->write_err && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        p->write_err = errno;
    if (a->progress)
        progress_count(p, s, 0); /* the footer, the last bytes received */
out:
    if (p->rc < 0 && p->msg[0] == '\0' && (s || conn)) {
        snprintf(p->msg, sizeof p->msg, "%s",
                 s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
        snprintf(p->sqlstate, sizeof p->sqlstate, "%s", s ? pgspout_stream_sqlstate(s) : "");
    }
    if (f && fclose(f) != 0 && !p->write_err)
        p->write_err = errno;
    pthread_mutex_lock(&g_plock);
    p->s = NULL;
    if (p->rc != PGSPOUT_DONE || p->write_err)
        cancel_all_locked();
    p->ended = 1;
    g_nended++;
    if (a->progress)
        pthread_cond_signal(&g_pcond);
    pthread_mutex_unlock(&g_plock);
    pgspout_stream_close(s);
    pgspout_conn_close(conn);
    return NULL;
}

static int exit_for(int code)
{
    return code == PGSPOUT_ECONN || code == PGSPOUT_ECONNECT ? EXIT_CONNECT
           : code == PGSPOUT_EINVAL                          ? EXIT_USAGE
                                                             : EXIT_QUERY;
}

int parts_run(const parts_args *a, void (*report)(int, const char *, const char *))
{
    pgspout_snapshot *snap = NULL;
    pgspout_plan *plan = NULL;
    int exit_code = 0, rc = PGSPOUT_OK;
    pgspout_plan_spec spec = a->spec;
    /* --option snapshot=ID: a snapshot someone else holds; else our own */
    char given[128];
    snprintf(given, sizeof given, "%s", pgspout_options_get(a->opts, "snapshot"));
    if (given[0]) {
        spec.snapshot = given;
    } else {
        rc = pgspout_snapshot_export(a->conninfo, a->opts, &snap);
        if (rc != PGSPOUT_OK) {
            report(rc, pgspout_snapshot_error(snap), NULL);
            pgspout_snapshot_close(snap);
            return exit_for(rc);
        }
        spec.snapshot = pgspout_snapshot_id(snap);
    }
    rc = pgspout_plan_make(a->conn, &spec, &plan);
    if (rc != PGSPOUT_OK) {
        report(rc, pgspout_conn_error(a->conn), NULL);
        pgspout_snapshot_close(snap);
        return exit_for(rc);
    }
    int n = pgspout_plan_npartitions(plan);
    part *parts = calloc((size_t)n, sizeof *parts);
    if (parts == NULL) {
        fprintf(stderr, "pgspout: out of memory\n");
        pgspout_plan_free(plan);
        pgspout_snapshot_close(snap);
        return EXIT_QUERY;
    }
    for (int i = 0; i < n; i++) {
        parts[i].index = i;
        parts[i].a = a;
        parts[i].plan = plan;
        if ((parts[i].target = target_name(a->output, a->fmt, i, n)) == NULL) {
            fprintf(stderr, "pgspout: out of memory\n");
            exit_code = EXIT_QUERY;
        }
    }
    long long total = -1;
    double t0 = now_s();
    if (a->progress) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&g_pcond, &ca);
        pthread_condattr_destroy(&ca);
        g_progress_rows = strtoull(pgspout_options_get(a->opts, "progress_rows"), NULL, 10);
        total = progress_total(a, plan);
        t0 = now_s();
    }
    pthread_mutex_lock(&g_plock);
    g_parts = parts;
    g_nparts = n;
    g_nended = 0;
    int started = 0;
    for (int i = 0; i < n && !exit_code && !g_cancelled; i++, started++)
        if (pthread_create(&parts[i].th, NULL, part_main, &parts[i]) != 0) {
            fprintf(stderr, "pgspout: cannot start a thread for partition %d\n", i);
            cancel_all_locked();
            exit_code = EXIT_QUERY;
        }
    pthread_mutex_unlock(&g_plock);
    if (a->progress)
        progress_wait(a, parts, n, started, total, t0);
    for (int i = 0; i < started; i++)
        pthread_join(parts[i].th, NULL);
    if (a->progress) {
        progress_line(parts, n, total, now_s() - t0, 1, a->tty);
        pthread_cond_destroy(&g_pcond);
    }
    /* the snapshot is no longer needed by anyone */
    pgspout_snapshot_close(snap);

    /* the first failure that is not the cancel it caused in the others */
    int all_ok = !exit_code && started == n;
    const part *bad = NULL;
    for (int i = 0; i < started; i++) {
        const part *p = &parts[i];
        if (p->rc == PGSPOUT_DONE && !p->write_err)
            continue;
        all_ok = 0;
        if (bad == NULL || (bad->rc == PGSPOUT_ECANCELLED && p->rc != PGSPOUT_ECANCELLED))
            bad = p;
    }
    if (bad && bad->write_err && bad->rc >= 0) {
        fprintf(stderr, "pgspout: partition %d: writing %s: %s\n", bad->index, bad->target,
                bad->msg[0] ? bad->msg : strerror(bad->write_err));
        exit_code = EXIT_QUERY;
    } else if (bad) {
        char msg[600];
        snprintf(msg, sizeof msg, "partition %d: %s", bad->index,
                 bad->msg[0] ? bad->msg : pgspout_strerror(bad->rc));
        report(bad->rc, msg, bad->sqlstate);
        exit_code = bad->write_err ? EXIT_QUERY : exit_for(bad->rc);
    }
    /* all renamed, or none */
    pthread_mutex_lock(&g_plock);
    for (int i = 0; i < n; i++) {
        part *p = &parts[i];
        if (p->tmp == NULL)
            continue;
        if (all_ok && rename(p->tmp, p->target) != 0) {
            fprintf(stderr, "pgspout: renaming %s to %s: %s\n", p->tmp, p->target, strerror(errno));
            all_ok = 0;
            exit_code = EXIT_QUERY;
            unlink(p->tmp);
        } else if (!all_ok)
            unlink(p->tmp);
        free(p->tmp);
        p->tmp = NULL;
    }
    g_parts = NULL;
    g_nparts = 0;
    pthread_mutex_unlock(&g_plock);
    if (all_ok) {
        /* make the renames durable: the targets share one directory */
        char *d = strdup(parts[0].target);
        int dfd = d ? open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(d);
    } else if (!exit_code) {
        exit_code = EXIT_QUERY;
    }
    if (!all_ok)
        fprintf(stderr, "pgspout: no partition file written (%d partitions, %s)\n", n,
                "every one is written only when all of them ended well");
    for (int i = 0; i < n; i++)
        free(parts[i].target);
    free(parts);
    pgspout_plan_free(plan);
    return exit_code;
}
