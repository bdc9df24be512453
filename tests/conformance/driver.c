/* driver.c - the C driver of the conformance suite (tests/conformance/README.md).
 *
 *   conformance_driver CASES-FILE [CASE...]     (server: $PGSPOUT_TEST_DSN)
 *
 * Runs every case of CASES-FILE (or only the named ones) through the public
 * C API and prints one normalized line per case on stdout, in the format the
 * README describes. C is the reference the runner compares the other
 * languages with, so this driver only does what the case says, through
 * pgspout.h, and renders the server's text as it came.
 *
 * The `rows` option belongs to the bindings (Python, Lua); in C its modes are
 * the C API's own views of a row: tuple = the values, json =
 * pgspout_row_json, dict = name=value per column. It is never passed to
 * pgspout_options_set; json sets the option json, as the bindings do.
 *
 * A stream closed with pgspout_stream_close is freed: the C API has no way to
 * read from it again. A read after the case's own `close` reports ESTATE
 * without calling the library (what the other languages must report), and
 * state and stats after it come from a snapshot taken just before the close.
 *
 * A case with "partitions N" reads a table in partitions (pgspout_plan_*) in
 * one snapshot this driver exports: see run_partitions. With --write-plans
 * DIR it only writes the plans of the cases whose "plan-from" is c, as
 * DIR/<case>.json, for the other drivers to read.
 */
#define _GNU_SOURCE
#include <pgspout.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h" /* tu_md5: the checksum every driver computes over its canonical rows */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "conformance_driver: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* ------------------------------------------------------------------ text */

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void t_add(text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (p == NULL)
            die("out of memory");
        t->p = p, t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void t_str(text *t, const char *s) { t_add(t, s, strlen(s)); }

/* A value escaped as COPY's text format: backslash, tab, newline, CR. */
static void t_escaped(text *t, const char *v, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = v[i] == '\\'   ? "\\\\"
                          : v[i] == '\t' ? "\\t"
                          : v[i] == '\n' ? "\\n"
                          : v[i] == '\r' ? "\\r"
                                         : NULL;
        if (esc) {
            t_add(t, v + start, i - start);
            t_str(t, esc);
            start = i + 1;
        }
    }
    t_add(t, v + start, n - start);
}

/* ----------------------------------------------------------------- cases */

typedef struct tcase {
    char *name, *sql, *actions;
    int nparams, nopts, na;
    char **params; /* NULL entries are SQL NULL */
    char **keys, **vals;
    /* partitioned reads */
    int nsetup, nparts, ncolumns, nbounds;
    char **setup, **columns, **bounds;
    char *table, *key, *where, *plan_from;
} tcase;

static void push(char ***arr, int *n, char *v)
{
    char **p = realloc(*arr, (size_t)(*n + 1) * sizeof *p);
    if (p == NULL)
        die("out of memory");
    p[(*n)++] = v;
    *arr = p;
}

/* The case file format is described in tests/conformance/README.md. */
static tcase *load_cases(const char *path, int *ncases)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    tcase *cases = NULL, *c = NULL;
    int n = 0, lineno = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        char *sp = strchr(line, ' ');
        const char *val = sp ? sp + 1 : "";
        if (sp)
            *sp = '\0';
        const char *key = line;
        if (strcmp(key, "case") == 0) {
            tcase *p = realloc(cases, (size_t)(n + 1) * sizeof *p);
            if (p == NULL)
                die("out of memory");
            cases = p;
            c = &cases[n++];
            memset(c, 0, sizeof *c);
            c->name = xstrdup(val);
            c->actions = xstrdup("read-all");
            continue;
        }
        if (c == NULL)
            die("%s:%d: '%s' before the first 'case'", path, lineno, key);
        if (strcmp(key, "sql") == 0) {
            free(c->sql);
            c->sql = xstrdup(val);
        } else if (strcmp(key, "param") == 0) {
            push(&c->params, &c->nparams, xstrdup(val));
        } else if (strcmp(key, "null") == 0) {
            push(&c->params, &c->nparams, NULL);
        } else if (strcmp(key, "opt") == 0) {
            const char *eq = strchr(val, '=');
            if (eq == NULL)
                die("%s:%d: opt wants KEY=VALUE", path, lineno);
            int nk = c->nopts;
            push(&c->keys, &nk, strndup(val, (size_t)(eq - val)));
            push(&c->vals, &c->nopts, xstrdup(eq + 1));
        } else if (strcmp(key, "do") == 0) {
            free(c->actions);
            c->actions = xstrdup(val);
        } else if (strcmp(key, "na") == 0) {
            if (strncmp(val, "c ", 2) == 0)
                c->na = 1;
        } else if (strcmp(key, "setup") == 0) {
            push(&c->setup, &c->nsetup, xstrdup(val));
        } else if (strcmp(key, "partitions") == 0) {
            if ((c->nparts = atoi(val)) < 1)
                die("%s:%d: partitions wants a number", path, lineno);
        } else if (strcmp(key, "column") == 0) {
            push(&c->columns, &c->ncolumns, xstrdup(val));
        } else if (strcmp(key, "bound") == 0) {
            push(&c->bounds, &c->nbounds, xstrdup(val));
        } else if (!strcmp(key, "table") || !strcmp(key, "key") || !strcmp(key, "where") ||
                   !strcmp(key, "plan-from")) {
            char **dst = key[0] == 't'   ? &c->table
                         : key[0] == 'k' ? &c->key
                         : key[0] == 'w' ? &c->where
                                         : &c->plan_from;
            free(*dst);
            *dst = xstrdup(val);
        } else if (strcmp(key, "expect") != 0) {
            die("%s:%d: unknown key '%s'", path, lineno, key);
        }
    }
    free(line);
    fclose(f);
    *ncases = n;
    return cases;
}

static void free_cases(tcase *cases, int n)
{
    for (int i = 0; i < n; i++) {
        tcase *c = &cases[i];
        for (int j = 0; j < c->nparams; j++)
            free(c->params[j]);
        for (int j = 0; j < c->nopts; j++)
            free(c->keys[j]), free(c->vals[j]);
        for (int j = 0; j < c->nsetup; j++)
            free(c->setup[j]);
        for (int j = 0; j < c->ncolumns; j++)
            free(c->columns[j]);
        for (int j = 0; j < c->nbounds; j++)
            free(c->bounds[j]);
        free(c->setup), free(c->columns), free(c->bounds);
        free(c->table), free(c->key), free(c->where), free(c->plan_from);
        free(c->params), free(c->keys), free(c->vals);
        free(c->name), free(c->sql), free(c->actions);
    }
    free(cases);
}

/* ------------------------------------------------------------- the run */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

enum { MODE_TUPLE, MODE_DICT, MODE_JSON };

/* A binary float8 as float8out prints it: the shortest digits that read
 * back exactly, positional for exponents in [-4, 15). */
static void float8_text(double d, char *out, size_t cap)
{
    char e[40], digits[20];
    int p = 0, k = 0;
    if (d != d || d == 1.0 / 0.0 || d == -1.0 / 0.0 || d == 0) {
        snprintf(out, cap, "%s",
                 d != d      ? "NaN"
                 : d > 0     ? "Infinity"
                 : d < 0     ? "-Infinity"
                 : 1 / d < 0 ? "-0"
                             : "0");
        return;
    }
    while (snprintf(e, sizeof e, "%.*e", p, d), strtod(e, NULL) != d)
        p++;
    const char *q = e + (e[0] == '-');
    for (; *q != 'e'; q++)
        if (*q != '.')
            digits[k++] = *q;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = '\0';
    int x = atoi(q + 1);
    char *o = out; /* out has room for 32: sign, 17 digits, point, 4 zeros */
    if (d < 0)
        *o++ = '-';
    if (x >= -4 && x < 15) { /* digit i weighs 10^(x - i) */
        if (x < 0) {
            o += sprintf(o, "0.");
            for (int i = x + 1; i < 0; i++)
                *o++ = '0';
            o += sprintf(o, "%s", digits);
        } else {
            for (int i = 0; i <= x; i++)
                *o++ = i < k ? digits[i] : '0';
            if (k > x + 1)
                o += sprintf(o, ".%s", digits + x + 1);
        }
        *o = '\0';
        return;
    }
    snprintf(o, cap - 1, "%c%s%se%c%02d", digits[0], k > 1 ? "." : "", digits + 1,
             x < 0 ? '-' : '+', x < 0 ? -x : x);
}

/* An action run on another thread: "now" ones are joined at once, "later"
 * ones after delay_ms, joined before the stream or connection goes away. */
typedef struct bg {
    pthread_t tid;
    int running;
    long delay_ms;
    int (*fn)(void *);
    void *arg;
    int rc;
    int ev; /* index of its token in the case's event list */
} bg;

static void *bg_main(void *p)
{
    bg *b = p;
    if (b->delay_ms > 0)
        sleep_ms(b->delay_ms);
    b->rc = b->fn(b->arg);
    return NULL;
}

static int do_cancel(void *s) { return pgspout_stream_cancel(s); }
static int do_pause(void *s) { return pgspout_stream_pause(s); }
static int do_resume(void *s) { return pgspout_stream_resume(s); }
static int do_conn_cancel(void *c) { return pgspout_conn_cancel(c); }

typedef struct run {
    const tcase *tc;
    pgspout_conn *conn;
    pgspout_stream *s;
    int opened, s_closed, conn_closed, mode;
    pgspout_stats snap; /* taken just before the case's own close */
    long long rows;
    tu_md5 sum;
    text row;
    /* the last read that ended without a row (or the open failure) */
    const char *end;
    char sqlstate[16];
    char *msg;
    char *ev[64];
    int nev;
    bg later[4];
    int nlater;
    /* partition cases: the last partition's state, rows delivered in all */
    char part_state[16];
    unsigned long long part_delivered;
} run;

static void ev_add(run *r, const char *fmt, ...)
{
    if (r->nev == 64)
        die("%s: too many actions", r->tc->name);
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    r->ev[r->nev++] = xstrdup(buf);
}

static void set_end(run *r, int code, const char *sqlstate, const char *msg)
{
    r->end = pgspout_code_name(code);
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate && *sqlstate ? sqlstate : "-");
    free(r->msg);
    r->msg = xstrdup(msg && *msg ? msg : "-");
}

static void render_row(run *r, const pgspout_row *row)
{
    r->row.len = 0;
    if (r->mode == MODE_JSON) {
        const char *js;
        size_t len;
        if (pgspout_row_json(r->s, row, &js, &len) != PGSPOUT_OK)
            die("%s: pgspout_row_json failed", r->tc->name);
        t_escaped(&r->row, js, len);
    } else {
        int n = pgspout_row_ncols(row);
        for (int c = 0; c < n; c++) {
            if (c)
                t_str(&r->row, "\t");
            if (r->mode == MODE_DICT) {
                const char *name = pgspout_stream_colname(r->s, c);
                t_escaped(&r->row, name, strlen(name));
                t_str(&r->row, "=");
            }
            size_t len;
            const char *v = pgspout_row_value(row, c, &len);
            char bin[512];
            double d;
            unsigned oid = pgspout_stream_coltype(r->s, c);
            if (!pgspout_row_isnull(row, c) && pgspout_stream_binary(r->s)) { /* option binary */
                if (oid == 701 && pgspout_binary_float8(v, len, &d) == PGSPOUT_OK)
                    float8_text(d, bin, sizeof bin), len = strlen(bin);
                else if (pgspout_binary_text(oid, v, len, bin, sizeof bin, &len) != PGSPOUT_OK)
                    die("%s: pgspout_binary_text failed for type %u", r->tc->name, oid);
                v = bin;
            }
            if (pgspout_row_isnull(row, c))
                t_str(&r->row, "\\N");
            else
                t_escaped(&r->row, v, len);
        }
    }
    t_str(&r->row, "\n");
    tu_md5_update(&r->sum, r->row.p, r->row.len);
    r->rows++;
}

/* One row request: 1 with a row, else the code (DONE or an error), recorded
 * as the case's end. */
static int read_one(run *r, int *code)
{
    if (r->s_closed) {
        /* freed by the case's close: nothing to call (see the header) */
        *code = PGSPOUT_ESTATE;
        set_end(r, *code, NULL, NULL);
        return 0;
    }
    const pgspout_row *row;
    int rc = pgspout_stream_next(r->s, &row);
    if (rc == PGSPOUT_OK) {
        render_row(r, row);
        return 1;
    }
    *code = rc;
    if (rc == PGSPOUT_DONE)
        set_end(r, rc, NULL, NULL);
    else
        set_end(r, rc, pgspout_stream_sqlstate(r->s), pgspout_stream_error(r->s));
    return 0;
}

static void join_later(run *r)
{
    for (int i = 0; i < r->nlater; i++) {
        bg *b = &r->later[i];
        if (!b->running)
            continue;
        pthread_join(b->tid, NULL);
        b->running = 0;
        /* its token, written when it started, gets the result */
        char buf[256];
        snprintf(buf, sizeof buf, "%s=%s", r->ev[b->ev], pgspout_code_name(b->rc));
        free(r->ev[b->ev]);
        r->ev[b->ev] = xstrdup(buf);
    }
}

static void start_bg(run *r, bg *b, int (*fn)(void *), void *arg, long delay_ms)
{
    memset(b, 0, sizeof *b);
    b->fn = fn, b->arg = arg, b->delay_ms = delay_ms;
    if (pthread_create(&b->tid, NULL, bg_main, b) != 0)
        die("%s: pthread_create failed", r->tc->name);
    b->running = 1;
}

/* Run another query on the case's connection: "ok" when it gives its one
 * row, else the code it failed with. */
static void reuse(run *r)
{
    if (r->conn_closed) {
        ev_add(r, "reuse=-");
        return;
    }
    pgspout_stream *s2 = NULL;
    int rc = pgspout_stream_open(r->conn, "SELECT 42", 0, NULL, NULL, &s2);
    if (rc == PGSPOUT_OK) {
        const pgspout_row *row;
        rc = pgspout_stream_next(s2, &row);
        int good = rc == PGSPOUT_OK && strcmp(pgspout_row_value(row, 0, NULL), "42") == 0;
        rc = pgspout_stream_next(s2, &row);
        ev_add(r, "reuse=%s", good && rc == PGSPOUT_DONE ? "ok" : "bad");
    } else {
        ev_add(r, "reuse=%s", pgspout_code_name(rc));
    }
    pgspout_stream_close(s2);
}

static void fmt_double(char *dst, size_t n, double v, int exact)
{
    if (v < 0)
        snprintf(dst, n, "-1");
    else if (exact)
        snprintf(dst, n, "%.2f", v);
    else
        snprintf(dst, n, "set");
}

static void stats_event(run *r)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    const char *state;
    if (r->s_closed)
        st = r->snap, state = "closed";
    else if (pgspout_stream_stats(r->s, &st) == PGSPOUT_OK)
        state = pgspout_state_name(st.state);
    else
        die("%s: pgspout_stream_stats failed", r->tc->name);
    char progress[32], eta[32], ttfr[32];
    fmt_double(progress, sizeof progress, st.progress, 1);
    fmt_double(eta, sizeof eta, st.eta, 0);
    fmt_double(ttfr, sizeof ttfr, st.time_to_first_row, 0);
    ev_add(r, "stats=%s/%" PRIu64 "/%" PRIu64 "/%" PRId64 "/%s/%s/%s", state, st.rows_delivered,
           st.pauses, st.expected_rows, progress, eta, ttfr);
}

/* The value of pgspout_rows_total{label="label"} now (0 if absent). */
static unsigned long long rows_metric(const char *label)
{
    char *prom = pgspout_metrics_prometheus(), key[160];
    if (prom == NULL)
        die("pgspout_metrics_prometheus failed");
    snprintf(key, sizeof key, "\npgspout_rows_total{label=\"%s\"} ", label);
    const char *p = strstr(prom, key);
    unsigned long long v = p ? strtoull(p + strlen(key), NULL, 10) : 0;
    pgspout_free(prom);
    return v;
}

static int has_action(const char *actions, const char *verb)
{
    size_t n = strlen(verb);
    for (const char *p = actions; (p = strstr(p, verb)) != NULL; p += n)
        if ((p == actions || p[-1] == ' ' || p[-1] == ';') &&
            (p[n] == '\0' || p[n] == ' ' || p[n] == ';'))
            return 1;
    return 0;
}

static void action(run *r, const char *verb, const char *arg)
{
    int need_stream = strcmp(verb, "reuse") && strcmp(verb, "conn-close") &&
                      strcmp(verb, "conn-cancel") && strcmp(verb, "conn-cancel-thread") &&
                      strcmp(verb, "metrics");
    if (need_stream && !r->opened) {
        ev_add(r, "%s=-", verb);
        return;
    }
    if (strcmp(verb, "read") == 0 || strcmp(verb, "read-all") == 0) {
        int all = verb[4] == '-';
        long want = all ? -1 : (arg ? strtol(arg, NULL, 10) : 1), got = 0;
        int code = PGSPOUT_OK;
        while ((all || got < want) && read_one(r, &code))
            got++;
        if (all)
            ev_add(r, "all=%ld:%s", got, pgspout_code_name(code));
        else if (got == want)
            ev_add(r, "read=%ld", got);
        else
            ev_add(r, "read=%ld:%s", got, pgspout_code_name(code));
    } else if (!strcmp(verb, "pause") || !strcmp(verb, "resume") || !strcmp(verb, "cancel")) {
        int (*fn)(pgspout_stream *) = verb[0] == 'p'   ? pgspout_stream_pause
                                      : verb[0] == 'r' ? pgspout_stream_resume
                                                       : pgspout_stream_cancel;
        ev_add(r, "%s=%s", verb,
               r->s_closed ? pgspout_code_name(PGSPOUT_ESTATE) : pgspout_code_name(fn(r->s)));
    } else if (!strcmp(verb, "pause-thread") || !strcmp(verb, "resume-thread") ||
               !strcmp(verb, "cancel-thread") || !strcmp(verb, "conn-cancel-thread")) {
        bg b;
        int (*fn)(void *) = verb[0] == 'p'   ? do_pause
                            : verb[0] == 'r' ? do_resume
                            : verb[1] == 'a' ? do_cancel
                                             : do_conn_cancel;
        start_bg(r, &b, fn, fn == do_conn_cancel ? (void *)r->conn : (void *)r->s, 0);
        pthread_join(b.tid, NULL);
        ev_add(r, "%s=%s", verb, pgspout_code_name(b.rc));
    } else if (!strcmp(verb, "resume-later") || !strcmp(verb, "cancel-later")) {
        if (r->nlater == 4)
            die("%s: too many *-later actions", r->tc->name);
        bg *b = &r->later[r->nlater++];
        start_bg(r, b, verb[0] == 'r' ? do_resume : do_cancel, r->s,
                 arg ? strtol(arg, NULL, 10) : 0);
        b->ev = r->nev;
        ev_add(r, "%s", verb);
    } else if (strcmp(verb, "close") == 0) {
        join_later(r);
        if (!r->s_closed) {
            r->snap = (pgspout_stats)PGSPOUT_STATS_INIT;
            pgspout_stream_stats(r->s, &r->snap);
            pgspout_stream_close(r->s);
            r->s = NULL;
            r->s_closed = 1;
        }
        ev_add(r, "close");
    } else if (strcmp(verb, "conn-close") == 0) {
        join_later(r);
        if (!r->conn_closed)
            pgspout_conn_close(r->conn);
        r->conn_closed = 1;
        ev_add(r, "conn-close");
    } else if (strcmp(verb, "conn-cancel") == 0) {
        ev_add(r, "conn-cancel=%s", pgspout_code_name(pgspout_conn_cancel(r->conn)));
    } else if (strcmp(verb, "reuse") == 0) {
        reuse(r);
    } else if (strcmp(verb, "stats") == 0) {
        stats_event(r);
    } else if (strcmp(verb, "state") == 0) {
        ev_add(r, "state=%s",
               r->s_closed ? "closed" : pgspout_state_name(pgspout_stream_state(r->s)));
    } else if (strcmp(verb, "elapsed-min") == 0) {
        /* the stream's own clock: stats elapsed, frozen when it ended */
        pgspout_stats st = PGSPOUT_STATS_INIT;
        if (r->s_closed)
            st = r->snap;
        else
            pgspout_stream_stats(r->s, &st);
        ev_add(r, "elapsed>=%s=%s", arg ? arg : "0",
               st.elapsed >= (arg ? strtod(arg, NULL) : 0) ? "yes" : "no");
    } else if (strcmp(verb, "metrics") == 0) {
        /* reported in the metric field */
    } else {
        die("%s: unknown action '%s'", r->tc->name, verb);
    }
}

/* A message on one line: newlines and tabs as \n and \t. */
static void print_msg(const char *m)
{
    for (; *m; m++) {
        if (*m == '\n')
            fputs("\\n", stdout);
        else if (*m == '\t')
            fputs("\\t", stdout);
        else if (*m != '\r')
            putchar(*m);
    }
}

/* ------------------------------------------------------ partitioned reads */

/* Run sql on conn to its end; dies on failure (the case's setup). */
static void exec_sql(const tcase *tc, pgspout_conn *conn, const char *sql)
{
    pgspout_stream *s = NULL;
    const pgspout_row *row;
    int rc = pgspout_stream_open(conn, sql, 0, NULL, NULL, &s);
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK)
        ;
    if (rc != PGSPOUT_DONE)
        die("%s: setup: %s: %s", tc->name, sql,
            s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
    pgspout_stream_close(s);
}

static char *plan_path(const char *dir, const tcase *tc)
{
    char *path;
    if (asprintf(&path, "%s/%s.json", dir, tc->name) < 0)
        die("out of memory");
    return path;
}

/* The case's plan: made from its spec on conn (importing snapshot, if not
 * NULL), or read from the file plan-from's driver wrote. OK, or the code
 * pgspout_plan_make failed with (the message in pgspout_conn_error). */
static int case_plan(const tcase *tc, pgspout_conn *conn, const char *snapshot, pgspout_plan **out)
{
    if (tc->plan_from && snapshot) { /* a reading run */
        const char *dir = getenv("PGSPOUT_CONF_PLANS");
        if (dir == NULL)
            die("%s: plan-from needs PGSPOUT_CONF_PLANS (run.sh sets it)", tc->name);
        char *path = plan_path(dir, tc), *err = NULL;
        FILE *f = fopen(path, "r");
        if (f == NULL)
            die("%s: %s: %s (run.sh --write-plans writes it)", tc->name, path, strerror(errno));
        text t = {0};
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            t_add(&t, buf, n);
        fclose(f);
        if (pgspout_plan_from_json(t.p ? t.p : "", out, &err) != PGSPOUT_OK)
            die("%s: %s: %s", tc->name, path, err ? err : "not a plan");
        free(t.p);
        free(path);
        return pgspout_plan_set_snapshot(*out, snapshot);
    }
    pgspout_plan_spec spec = PGSPOUT_PLAN_SPEC_INIT;
    spec.table = tc->table;
    spec.ncolumns = tc->ncolumns;
    spec.columns = (const char *const *)tc->columns;
    spec.where = tc->where;
    spec.nparams = tc->nparams;
    spec.params = (const char *const *)tc->params;
    spec.npartitions = tc->nparts;
    spec.key = tc->key;
    spec.nbounds = tc->nbounds;
    spec.bounds = (const char *const *)tc->bounds;
    spec.snapshot = snapshot;
    return pgspout_plan_make(conn, &spec, out);
}

/* --write-plans DIR: the plans of the cases whose plan-from is c, made
 * without a snapshot (each reader imports its own). */
static void write_plan(const char *dsn, const char *dir, const tcase *tc)
{
    if (tc->plan_from == NULL || strcmp(tc->plan_from, "c") != 0)
        return;
    pgspout_conn *conn;
    if (pgspout_connect(dsn, &conn) != PGSPOUT_OK)
        die("%s: connect: %s", tc->name, pgspout_conn_error(conn));
    for (int i = 0; i < tc->nsetup; i++)
        exec_sql(tc, conn, tc->setup[i]);
    pgspout_plan *plan = NULL;
    if (case_plan(tc, conn, NULL, &plan) != PGSPOUT_OK)
        die("%s: plan: %s", tc->name, pgspout_conn_error(conn));
    char *json = pgspout_plan_json(plan), *path = plan_path(dir, tc);
    FILE *f = fopen(path, "w");
    if (json == NULL || f == NULL || fputs(json, f) < 0 || fclose(f) != 0)
        die("%s: writing %s failed", tc->name, path);
    free(path);
    pgspout_free(json);
    pgspout_plan_free(plan);
    pgspout_conn_close(conn);
}

/* A partition case: export a snapshot, plan (or read plan-from's plan),
 * ship the plan through JSON, and read its partitions in order on the
 * case's connection, each an ordinary stream importing the snapshot, as
 * one read: the rows of all of them, the end of the last. ev: plan=MD5 (the
 * plan's JSON with its snapshot blanked, as this language writes it) or
 * plan=CODE, then all=K:CODE. */
static void run_partitions(run *r, const char *dsn, const pgspout_options *o)
{
    const tcase *tc = r->tc;
    pgspout_snapshot *snap = NULL;
    int rc = pgspout_snapshot_export(dsn, NULL, &snap);
    if (rc != PGSPOUT_OK)
        die("%s: snapshot: %s", tc->name, pgspout_snapshot_error(snap));
    const char *id = pgspout_snapshot_id(snap);
    pgspout_plan *made = NULL, *plan = NULL;
    rc = case_plan(tc, r->conn, id, &made);
    if (rc != PGSPOUT_OK) {
        /* no SQLSTATE accessor for a plan: the one its message quotes, as
         * every driver reports it */
        const char *msg = pgspout_conn_error(r->conn), *q = strstr(msg, "(SQLSTATE ");
        char sqlstate[6] = "";
        if (q && strlen(q) >= 16 && q[15] == ')')
            memcpy(sqlstate, q + 10, 5);
        set_end(r, rc, sqlstate, msg);
        ev_add(r, "plan=%s", pgspout_code_name(rc));
    } else {
        /* shipped: what a worker reads */
        char *json = pgspout_plan_json(made), *err = NULL;
        if (json == NULL || pgspout_plan_from_json(json, &plan, &err) != PGSPOUT_OK)
            die("%s: the plan's JSON does not read back: %s", tc->name, err ? err : "");
        pgspout_free(json);
        if (strcmp(pgspout_plan_snapshot(plan), id) != 0)
            die("%s: the plan's JSON lost its snapshot", tc->name);
        char sum[33];
        if (pgspout_plan_set_snapshot(plan, "") != PGSPOUT_OK ||
            (json = pgspout_plan_json(plan)) == NULL)
            die("%s: cannot blank the plan's snapshot", tc->name);
        tu_md5_str(json, strlen(json), sum);
        pgspout_free(json);
        pgspout_plan_set_snapshot(plan, id);
        ev_add(r, "plan=%s", sum);
    }
    char *script = xstrdup(tc->actions), *save = NULL;
    for (char *a = strtok_r(script, "; ", &save); a; a = strtok_r(NULL, "; ", &save)) {
        if (strcmp(a, "read-all") != 0)
            die("%s: a partition case runs read-all only, not '%s'", tc->name, a);
        if (plan == NULL) {
            ev_add(r, "read-all=-");
            continue;
        }
        long got = 0;
        int code = PGSPOUT_DONE;
        for (int i = 0; i < pgspout_plan_npartitions(plan) && code == PGSPOUT_DONE; i++) {
            pgspout_stats st = PGSPOUT_STATS_INIT;
            if (r->s) {
                pgspout_stream_close(r->s);
                r->s = NULL;
            }
            code = pgspout_plan_open(r->conn, plan, i, o, &r->s);
            if (code != PGSPOUT_OK) {
                set_end(r, code, r->s ? pgspout_stream_sqlstate(r->s) : NULL,
                        r->s ? pgspout_stream_error(r->s) : pgspout_conn_error(r->conn));
                pgspout_stream_close(r->s);
                r->s = NULL;
                break;
            }
            while (read_one(r, &code))
                got++;
            pgspout_stream_stats(r->s, &st);
            r->part_delivered += st.rows_delivered;
            snprintf(r->part_state, sizeof r->part_state, "%s", pgspout_state_name(st.state));
        }
        ev_add(r, "all=%ld:%s", got, pgspout_code_name(code));
    }
    free(script);
    pgspout_plan_free(made);
    pgspout_plan_free(plan);
    pgspout_snapshot_close(snap);
}

static void run_case(const char *dsn, const tcase *tc)
{
    if (tc->na) {
        printf("%s na\n", tc->name);
        return;
    }
    run r;
    memset(&r, 0, sizeof r);
    r.tc = tc;
    r.end = "-";
    strcpy(r.sqlstate, "-");
    r.msg = xstrdup("-");
    tu_md5_init(&r.sum);

    if (pgspout_connect(dsn, &r.conn) != PGSPOUT_OK)
        die("%s: connect: %s", tc->name, pgspout_conn_error(r.conn));
    for (int i = 0; i < tc->nsetup; i++)
        exec_sql(tc, r.conn, tc->setup[i]);

    const char *label = NULL;
    pgspout_options *o = pgspout_options_new();
    if (o == NULL)
        die("out of memory");
    int rc = PGSPOUT_OK;
    for (int i = 0; i < tc->nopts && rc == PGSPOUT_OK; i++) {
        if (strcmp(tc->keys[i], "label") == 0)
            label = tc->vals[i];
        if (strcmp(tc->keys[i], "rows") == 0) {
            if (strcmp(tc->vals[i], "tuple") == 0)
                r.mode = MODE_TUPLE;
            else if (strcmp(tc->vals[i], "dict") == 0)
                r.mode = MODE_DICT;
            else if (strcmp(tc->vals[i], "json") == 0)
                r.mode = MODE_JSON, rc = pgspout_options_set(o, "json", "on"); /* as the bindings */
            else
                die("%s: rows=%s: mark the case 'na c'", tc->name, tc->vals[i]);
            continue;
        }
        rc = pgspout_options_set(o, tc->keys[i], tc->vals[i]);
        if (rc != PGSPOUT_OK)
            set_end(&r, rc, NULL, pgspout_options_error(o));
    }
    int metrics = has_action(tc->actions, "metrics");
    if (metrics && label == NULL)
        die("%s: the metrics action needs a label option", tc->name);
    unsigned long long before = metrics ? rows_metric(label) : 0;

    char state[16] = "-", delivered[32] = "-";
    if (tc->nparts > 0) {
        if (rc == PGSPOUT_OK)
            run_partitions(&r, dsn, o);
        else
            ev_add(&r, "plan=%s", r.end);
        pgspout_options_free(o);
        if (r.part_state[0]) { /* a partition opened */
            snprintf(state, sizeof state, "%s", r.part_state);
            snprintf(delivered, sizeof delivered, "%llu", r.part_delivered);
        }
        goto report;
    }
    if (rc == PGSPOUT_OK) {
        rc = pgspout_stream_open(r.conn, tc->sql, tc->nparams, (const char *const *)tc->params, o,
                                 &r.s);
        if (rc != PGSPOUT_OK) {
            if (r.s)
                set_end(&r, rc, pgspout_stream_sqlstate(r.s), pgspout_stream_error(r.s));
            else
                set_end(&r, rc, NULL, pgspout_conn_error(r.conn));
            pgspout_stream_close(r.s);
            r.s = NULL;
        }
    }
    pgspout_options_free(o);
    r.opened = rc == PGSPOUT_OK;
    ev_add(&r, "open=%s", pgspout_code_name(rc));

    /* the actions: "verb [arg]" separated by ';' */
    char *script = xstrdup(tc->actions), *save = NULL;
    for (char *a = strtok_r(script, ";", &save); a; a = strtok_r(NULL, ";", &save)) {
        while (*a == ' ')
            a++;
        char *end = a + strlen(a);
        while (end > a && end[-1] == ' ')
            *--end = '\0';
        if (*a == '\0')
            continue;
        char *arg = strchr(a, ' ');
        if (arg)
            *arg++ = '\0';
        action(&r, a, arg);
    }
    free(script);
    join_later(&r);

    if (r.opened) {
        pgspout_stats st = PGSPOUT_STATS_INIT;
        if (r.s_closed) {
            st = r.snap;
            snprintf(state, sizeof state, "closed");
        } else {
            pgspout_stream_stats(r.s, &st);
            snprintf(state, sizeof state, "%s", pgspout_state_name(pgspout_stream_state(r.s)));
        }
        snprintf(delivered, sizeof delivered, "%" PRIu64, st.rows_delivered);
    }
report:
    pgspout_stream_close(r.s);
    if (!r.conn_closed)
        pgspout_conn_close(r.conn);

    char metric[32] = "-";
    if (metrics)
        snprintf(metric, sizeof metric, "%llu", rows_metric(label) - before);
    char sum[33];
    tu_md5_hex(&r.sum, sum);

    printf("%s rows=%lld sum=%s end=%s sqlstate=%s state=%s delivered=%s metric=%s ev=", tc->name,
           r.rows, sum, r.end, r.sqlstate, state, delivered, metric);
    for (int i = 0; i < r.nev; i++) {
        printf("%s%s", i ? "," : "", r.ev[i]);
        free(r.ev[i]);
    }
    printf(" msg=");
    print_msg(r.msg);
    putchar('\n');
    fflush(stdout);
    free(r.msg);
    free(r.row.p);
}

int main(int argc, char **argv)
{
    const char *plans_dir = NULL;
    if (argc > 2 && strcmp(argv[1], "--write-plans") == 0) {
        plans_dir = argv[2];
        argv += 2;
        argc -= 2;
    }
    if (argc < 2)
        die("usage: conformance_driver [--write-plans DIR] CASES-FILE [CASE...]");
    const char *dsn = getenv("PGSPOUT_TEST_DSN");
    if (dsn == NULL)
        die("PGSPOUT_TEST_DSN is not set");
    int n;
    tcase *cases = load_cases(argv[1], &n);
    for (int a = 2; a < argc; a++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            found |= strcmp(cases[i].name, argv[a]) == 0;
        if (!found)
            die("no case named '%s'", argv[a]);
    }
    for (int i = 0; i < n; i++) {
        int want = argc == 2;
        for (int a = 2; a < argc; a++)
            want |= strcmp(cases[i].name, argv[a]) == 0;
        if (want && plans_dir)
            write_plan(dsn, plans_dir, &cases[i]);
        else if (want)
            run_case(dsn, &cases[i]);
    }
    free_cases(cases, n);
    return 0;
}
