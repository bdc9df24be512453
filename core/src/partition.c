/* partition.c - exported snapshots and partition plans (pgspout_snapshot_*,
 * pgspout_plan_*).
 *
 * A snapshot holder is a connection of its own in a REPEATABLE READ, READ
 * ONLY transaction that ran pg_export_snapshot(); streams import it with the
 * stream option "snapshot" (stream.c). A plan is a list of partitions, each
 * one SQL text with its parameters; the catalog queries that build it are
 * ordinary pgspout streams with parameters, and every identifier in the
 * SQL comes back from the server already quoted (format('%I.%I'),
 * quote_ident, format_type): user text never becomes SQL, but for the
 * caller's own where condition, which is SQL by definition. */
#include "internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

/* --------------------------------------------------------------- snapshot */

struct pgspout_snapshot {
    pgspout_conn *conn;
    char id[PGS_SNAPSHOT_MAX + 1];
    char *err;
};

static void snap_error(pgspout_snapshot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void snap_error(pgspout_snapshot *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pgs_set_message(&s->err, fmt, ap);
    va_end(ap);
}

int pgspout_snapshot_export(const char *conninfo, const pgspout_options *opts,
                            pgspout_snapshot **out)
{
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (conninfo == NULL)
        return PGSPOUT_EINVAL;
    pgspout_snapshot *s = calloc(1, sizeof *s);
    if (s == NULL)
        return PGSPOUT_ENOMEM;
    *out = s;
    int rc = pgspout_connect_opts(conninfo, opts, &s->conn);
    if (rc != PGSPOUT_OK) {
        snap_error(s, "%s", s->conn ? pgspout_conn_error(s->conn) : pgspout_strerror(rc));
        return rc;
    }
    int64_t deadline = 0;
    if (opts && opts->timeout_ms > 0)
        deadline = pgs_now_ns() + opts->timeout_ms * PGS_NS_PER_MS;
    char *id = NULL;
    rc = pgs_conn_exec_value(s->conn,
                             "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; "
                             "SELECT pg_export_snapshot()",
                             deadline, &id);
    if (rc == PGSPOUT_OK && strlen(id) > PGS_SNAPSHOT_MAX) {
        pgs_conn_set_error(s->conn, "pg_export_snapshot() returned an id longer than %d bytes",
                           PGS_SNAPSHOT_MAX);
        rc = PGSPOUT_EINTERNAL;
    }
    if (rc != PGSPOUT_OK) {
        snap_error(s, "exporting a snapshot: %s", pgspout_conn_error(s->conn));
        free(id);
        return rc;
    }
    strcpy(s->id, id);
    free(id);
    return PGSPOUT_OK;
}

const char *pgspout_snapshot_id(const pgspout_snapshot *s) { return s ? s->id : ""; }

const char *pgspout_snapshot_error(const pgspout_snapshot *s) { return s && s->err ? s->err : ""; }

int pgspout_snapshot_ok(const pgspout_snapshot *s)
{
    return s != NULL && s->id[0] != '\0' && pgspout_conn_ok(s->conn) &&
           PQtransactionStatus(s->conn->pg) == PQTRANS_INTRANS;
}

void pgspout_snapshot_close(pgspout_snapshot *s)
{
    if (s == NULL)
        return;
    /* end the transaction, and with it the snapshot, before returning: a
     * connection closed at once would end it only when the server gets to
     * it, and an import just after could still succeed */
    if (s->conn && pgspout_conn_ok(s->conn) && PQtransactionStatus(s->conn->pg) != PQTRANS_IDLE) {
        pgs_interrupt_suspend();
        pgs_conn_exec(s->conn, "ROLLBACK", pgs_now_ns() + PGS_CANCEL_TIMEOUT_MS * PGS_NS_PER_MS);
        pgs_interrupt_resume();
    }
    pgspout_conn_close(s->conn);
    free(s->err);
    free(s);
}

/* ------------------------------------------------------------------ plans */

typedef struct part {
    char *sql;
    int nparams;
    char **params; /* NULL entries are SQL NULL */
} part;

struct pgspout_plan {
    char snapshot[PGS_SNAPSHOT_MAX + 1];
    char *table; /* as the server quoted it */
    int n;
    part *parts;
};

void pgspout_plan_free(pgspout_plan *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->n; i++) {
        free(p->parts[i].sql);
        for (int j = 0; j < p->parts[i].nparams; j++)
            free(p->parts[i].params[j]);
        free(p->parts[i].params);
    }
    free(p->parts);
    free(p->table);
    free(p);
}

static char *dup_or_null(const char *v, int *oom)
{
    if (v == NULL)
        return NULL;
    char *d = strdup(v);
    if (d == NULL)
        *oom = 1;
    return d;
}

/* Partition i: sql, the caller's parameters, then the extra ones. */
static int add_part(pgspout_plan *p, const char *sql, int nuser, const char *const *user,
                    int nextra, const char *const *extra)
{
    part *pt = &p->parts[p->n];
    int oom = 0;
    memset(pt, 0, sizeof *pt);
    pt->sql = strdup(sql);
    pt->params = calloc((size_t)(nuser + nextra + 1), sizeof *pt->params);
    if (pt->sql == NULL || pt->params == NULL) {
        free(pt->sql);
        free(pt->params);
        pt->sql = NULL;
        pt->params = NULL;
        return PGSPOUT_ENOMEM;
    }
    p->n++;
    for (int j = 0; j < nuser; j++)
        pt->params[pt->nparams++] = dup_or_null(user[j], &oom);
    for (int j = 0; j < nextra; j++)
        pt->params[pt->nparams++] = dup_or_null(extra[j], &oom);
    return oom ? PGSPOUT_ENOMEM : PGSPOUT_OK;
}

/* Rows of a catalog query (text values, NULL for SQL NULL), one column. */
typedef struct column {
    char **v;
    int n, cap;
} column;

static void column_free(column *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
    memset(c, 0, sizeof *c);
}

/* Run sql with params on conn as a stream; every row's values go into
 * cols[0..ncols) (NULL for SQL NULL). The server's error goes on conn. */
static int query(pgspout_conn *conn, const char *sql, int nparams, const char *const *params,
                 int ncols, column *cols)
{
    pgspout_stream *s = NULL;
    pgspout_options o;
    pgs_options_defaults(&o);
    o.metrics = 0; /* the plan's own catalog queries are not the caller's streams */
    int rc = pgspout_stream_open(conn, sql, nparams, params, &o, &s);
    const pgspout_row *row;
    while (rc == PGSPOUT_OK && (rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK) {
        for (int c = 0; c < ncols; c++) {
            column *col = &cols[c];
            if (col->n == col->cap) {
                int cap = col->cap ? col->cap * 2 : 16;
                char **v = realloc(col->v, (size_t)cap * sizeof *v);
                if (v == NULL) {
                    rc = PGSPOUT_ENOMEM;
                    break;
                }
                col->v = v;
                col->cap = cap;
            }
            char *val = NULL;
            if (!pgspout_row_isnull(row, c) &&
                (val = strdup(pgspout_row_value(row, c, NULL))) == NULL) {
                rc = PGSPOUT_ENOMEM;
                break;
            }
            col->v[col->n++] = val;
        }
    }
    if (rc == PGSPOUT_DONE)
        rc = PGSPOUT_OK;
    else if (s != NULL && rc != PGSPOUT_ENOMEM)
        pgs_conn_set_error(conn, "%s", pgspout_stream_error(s));
    else if (rc == PGSPOUT_ENOMEM)
        pgs_conn_set_error(conn, "out of memory while building a plan");
    pgspout_stream_close(s);
    return rc;
}

/* One column of the table: its name as the server quotes it, and its type
 * as format_type writes it (when type is not NULL). ENOTFOUND-like failures
 * are EVALUE with the message on conn. */
static int resolve_column(pgspout_conn *conn, const char *oid, const char *name, char **quoted,
                          char **type)
{
    const char *params[] = {oid, name};
    column cols[2] = {{0}};
    int rc = query(conn,
                   "SELECT quote_ident(attname), format_type(atttypid, atttypmod) "
                   "FROM pg_catalog.pg_attribute WHERE attrelid = $1::oid AND attname = $2 "
                   "AND attnum > 0 AND NOT attisdropped",
                   2, params, 2, cols);
    if (rc == PGSPOUT_OK && cols[0].n != 1) {
        pgs_conn_set_error(conn,
                           "the table has no column named \"%s\" (names are exact, as the "
                           "catalog holds them)",
                           name);
        rc = PGSPOUT_EVALUE;
    }
    if (rc == PGSPOUT_OK) {
        *quoted = cols[0].v[0];
        cols[0].v[0] = NULL;
        if (type) {
            *type = cols[1].v[0];
            cols[1].v[0] = NULL;
        }
    }
    column_free(&cols[0]);
    column_free(&cols[1]);
    return rc;
}

/* The table: oid, name as the server quotes it (schema-qualified), relkind,
 * blocks, raw schema and name (for pg_stats). */
typedef struct table_info {
    char *oid, *quoted, *kind, *blocks, *nspname, *relname;
} table_info;

static void table_free(table_info *t)
{
    free(t->oid);
    free(t->quoted);
    free(t->kind);
    free(t->blocks);
    free(t->nspname);
    free(t->relname);
}

static int resolve_table(pgspout_conn *conn, const char *table, table_info *t)
{
    const char *params[] = {table};
    column cols[6] = {{0}};
    /* to_regclass parses the text as SQL names a relation (it refuses what
     * is not a name) and finds it on the search_path like a query would;
     * NULL when there is no such relation */
    int rc = query(conn,
                   "SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relkind, "
                   "pg_relation_size(c.oid) / current_setting('block_size')::int, "
                   "n.nspname, c.relname "
                   "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
                   "n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                   1, params, 6, cols);
    if (rc == PGSPOUT_ESQL)
        pgs_conn_set_error(conn, "\"%s\" is not a table name: %s", table, pgspout_conn_error(conn));
    if (rc == PGSPOUT_OK && cols[0].n != 1) {
        pgs_conn_set_error(conn,
                           "no table \"%s\" (a name as SQL writes it: schema.table, "
                           "double quotes where case matters)",
                           table);
        rc = PGSPOUT_EVALUE;
    }
    if (rc == PGSPOUT_OK) {
        char **f[] = {&t->oid, &t->quoted, &t->kind, &t->blocks, &t->nspname, &t->relname};
        for (int i = 0; i < 6; i++) {
            *f[i] = cols[i].v[0];
            cols[i].v[0] = NULL;
        }
    }
    for (int i = 0; i < 6; i++)
        column_free(&cols[i]);
    if (rc == PGSPOUT_ESQL)
        rc = PGSPOUT_EVALUE;
    return rc;
}

/* "SELECT <cols> FROM <table>" into b. */
static int select_list(pgspout_conn *conn, const char *oid, const pgspout_plan_spec *spec,
                       const char *table, pgs_buf *b)
{
    pgs_buf_puts(b, "SELECT ");
    if (spec->ncolumns == 0)
        pgs_buf_puts(b, "*");
    for (int i = 0; i < spec->ncolumns; i++) {
        if (spec->columns[i] == NULL) {
            pgs_conn_set_error(conn, "plan: columns[%d] is NULL", i);
            return PGSPOUT_EINVAL;
        }
        char *q = NULL;
        int rc = resolve_column(conn, oid, spec->columns[i], &q, NULL);
        if (rc != PGSPOUT_OK)
            return rc;
        pgs_buf_printf(b, "%s%s", i ? ", " : "", q);
        free(q);
    }
    pgs_buf_printf(b, " FROM %s WHERE ", table);
    return b->oom ? PGSPOUT_ENOMEM : PGSPOUT_OK;
}

/* sql = head + cond + the caller's where; partition added with extra params */
static int add_query(pgspout_plan *p, const pgs_buf *head, const char *cond,
                     const pgspout_plan_spec *spec, int nextra, const char *const *extra)
{
    pgs_buf q = PGS_BUF_INIT;
    pgs_buf_puts(&q, head->data);
    pgs_buf_puts(&q, cond);
    if (spec->where != NULL)
        pgs_buf_printf(&q, " AND (\n%s\n)", spec->where); /* newlines: a -- comment ends */
    int rc =
        q.oom ? PGSPOUT_ENOMEM : add_part(p, q.data, spec->nparams, spec->params, nextra, extra);
    pgs_buf_free(&q);
    return rc;
}

static int plan_blocks(pgspout_conn *conn, const pgspout_plan_spec *spec, const table_info *t,
                       const pgs_buf *head, pgspout_plan *p)
{
    if (strcmp(t->kind, "r") != 0 && strcmp(t->kind, "m") != 0) {
        pgs_conn_set_error(conn,
                           "%s is not a plain table or materialized view (relkind %s): block "
                           "ranges need one; partition it by a key instead",
                           t->quoted, t->kind);
        return PGSPOUT_EVALUE;
    }
    long long blocks = strtoll(t->blocks, NULL, 10);
    int n = spec->npartitions;
    char lo[32], hi[32], cond[128];
    int a = spec->nparams + 1;
    for (int i = 0; i < n; i++) {
        /* block boundaries: the first partition has no lower bound, the last
         * no upper one, so blocks added after the plan was made are read too */
        long long b0 = blocks * i / n, b1 = blocks * (i + 1) / n;
        snprintf(lo, sizeof lo, "(%lld,0)", b0);
        snprintf(hi, sizeof hi, "(%lld,0)", b1);
        const char *both[] = {lo, hi};
        int rc;
        if (n == 1)
            rc = add_query(p, head, "true", spec, 0, NULL);
        else if (i == 0) {
            snprintf(cond, sizeof cond, "ctid < $%d::tid", a);
            rc = add_query(p, head, cond, spec, 1, both + 1);
        } else if (i == n - 1) {
            snprintf(cond, sizeof cond, "ctid >= $%d::tid", a);
            rc = add_query(p, head, cond, spec, 1, both);
        } else {
            snprintf(cond, sizeof cond, "ctid >= $%d::tid AND ctid < $%d::tid", a, a + 1);
            rc = add_query(p, head, cond, spec, 2, both);
        }
        if (rc != PGSPOUT_OK)
            return rc;
    }
    return PGSPOUT_OK;
}

/* The key's cuts: the given bounds, or npartitions - 1 evenly spaced ones
 * from the pg_stats histogram; either way sorted and deduplicated by the
 * server in the key's type (a bound that is not of the type is refused
 * there). */
static int key_cuts(pgspout_conn *conn, const pgspout_plan_spec *spec, const table_info *t,
                    const char *type, column *cuts)
{
    pgs_buf q = PGS_BUF_INIT;
    int rc;
    column hist = {0};
    if (spec->nbounds > 0) {
        for (int i = 0; i < spec->nbounds; i++)
            if (spec->bounds[i] == NULL) {
                pgs_conn_set_error(conn, "plan: bounds[%d] is NULL", i);
                return PGSPOUT_EINVAL;
            }
        pgs_buf_puts(&q, "SELECT d.v::text FROM (SELECT DISTINCT v FROM (VALUES ");
        for (int i = 0; i < spec->nbounds; i++)
            pgs_buf_printf(&q, "%s($%d::%s)", i ? ", " : "", i + 1, type);
        pgs_buf_puts(&q, ") b(v)) d ORDER BY d.v");
        rc = q.oom ? PGSPOUT_ENOMEM : query(conn, q.data, spec->nbounds, spec->bounds, 1, cuts);
        pgs_buf_free(&q);
        if (rc == PGSPOUT_ESQL) {
            pgs_conn_set_error(conn, "a bound is not a value of the key's type %s: %s", type,
                               pgspout_conn_error(conn));
            rc = PGSPOUT_EVALUE;
        }
        return rc;
    }
    const char *params[] = {t->nspname, t->relname, spec->key};
    rc = query(conn,
               "SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE schemaname = $1 "
               "AND tablename = $2 AND attname = $3 ORDER BY inherited DESC LIMIT 1",
               3, params, 1, &hist);
    if (rc == PGSPOUT_OK && (hist.n == 0 || hist.v[0] == NULL)) {
        pgs_conn_set_error(conn,
                           "no pg_stats histogram for %s.%s: ANALYZE the table, or give the "
                           "bounds",
                           t->quoted, spec->key);
        rc = PGSPOUT_EVALUE;
    }
    if (rc == PGSPOUT_OK) {
        column all = {0};
        pgs_buf_printf(
            &q, "SELECT v::text FROM unnest($1::%s[]) WITH ORDINALITY h(v, i) ORDER BY i", type);
        const char *h[] = {hist.v[0]};
        rc = q.oom ? PGSPOUT_ENOMEM : query(conn, q.data, 1, h, 1, &all);
        /* npartitions - 1 cuts at even steps through the histogram, whose
         * buckets hold about as many rows each; equal neighbours dropped */
        int n = spec->npartitions;
        for (int k = 1; rc == PGSPOUT_OK && k < n && all.n > 0; k++) {
            int at = (int)(((long long)k * (all.n - 1) + n / 2) / n);
            const char *v = all.v[at];
            if (v == NULL || (cuts->n > 0 && strcmp(cuts->v[cuts->n - 1], v) == 0))
                continue;
            if (cuts->n == cuts->cap) {
                int cap = cuts->cap ? cuts->cap * 2 : 16;
                char **nv = realloc(cuts->v, (size_t)cap * sizeof *nv);
                if (nv == NULL) {
                    rc = PGSPOUT_ENOMEM;
                    break;
                }
                cuts->v = nv;
                cuts->cap = cap;
            }
            if ((cuts->v[cuts->n] = strdup(v)) == NULL)
                rc = PGSPOUT_ENOMEM;
            else
                cuts->n++;
        }
        column_free(&all);
    }
    pgs_buf_free(&q);
    column_free(&hist);
    return rc;
}

static int plan_keys(pgspout_conn *conn, const pgspout_plan_spec *spec, const table_info *t,
                     const pgs_buf *head, pgspout_plan *p)
{
    char *key = NULL, *type = NULL;
    column cuts = {0};
    int rc = resolve_column(conn, t->oid, spec->key, &key, &type);
    if (rc == PGSPOUT_OK)
        rc = key_cuts(conn, spec, t, type, &cuts);
    if (rc == PGSPOUT_OK) {
        free(p->parts);
        p->parts = calloc((size_t)cuts.n + 1, sizeof *p->parts);
        if (p->parts == NULL)
            rc = PGSPOUT_ENOMEM;
    }
    pgs_buf cond = PGS_BUF_INIT;
    int a = spec->nparams + 1;
    for (int i = 0; rc == PGSPOUT_OK && i <= cuts.n; i++) {
        pgs_buf_clear(&cond);
        const char *const *bounds = (const char *const *)cuts.v;
        /* [cut i-1, cut i): NULL keys go with the first partition */
        if (cuts.n == 0)
            rc = add_query(p, head, "true", spec, 0, NULL);
        else if (i == 0) {
            pgs_buf_printf(&cond, "(%s < $%d OR %s IS NULL)", key, a, key);
            rc = cond.oom ? PGSPOUT_ENOMEM : add_query(p, head, cond.data, spec, 1, bounds);
        } else if (i == cuts.n) {
            pgs_buf_printf(&cond, "%s >= $%d", key, a);
            rc = cond.oom ? PGSPOUT_ENOMEM : add_query(p, head, cond.data, spec, 1, bounds + i - 1);
        } else {
            pgs_buf_printf(&cond, "%s >= $%d AND %s < $%d", key, a, key, a + 1);
            rc = cond.oom ? PGSPOUT_ENOMEM : add_query(p, head, cond.data, spec, 2, bounds + i - 1);
        }
    }
    pgs_buf_free(&cond);
    column_free(&cuts);
    free(key);
    free(type);
    return rc;
}

int pgspout_plan_make(pgspout_conn *conn, const pgspout_plan_spec *spec, pgspout_plan **out)
{
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (conn == NULL || spec == NULL)
        return PGSPOUT_EINVAL;
    const char *bad =
        spec->size < sizeof(pgspout_plan_spec) ? "spec.size is too small"
        : spec->table == NULL                  ? "spec.table is NULL"
        : spec->ncolumns < 0 || (spec->ncolumns > 0 && spec->columns == NULL)
            ? "spec.columns does not match spec.ncolumns"
        : spec->nparams < 0 || spec->nparams > 65000 || (spec->nparams > 0 && spec->params == NULL)
            ? "spec.params does not match spec.nparams"
        : spec->nbounds < 0 || spec->nbounds > 65000 || (spec->nbounds > 0 && spec->bounds == NULL)
            ? "spec.bounds does not match spec.nbounds"
        : spec->nbounds > 0 && spec->key == NULL ? "spec.bounds need spec.key"
        : spec->nbounds == 0 && (spec->npartitions < 1 || spec->npartitions > 10000)
            ? "spec.npartitions out of range [1, 10000]"
            : NULL;
    if (bad) {
        pgs_conn_set_error(conn, "plan: %s", bad);
        return PGSPOUT_EINVAL;
    }
    if (spec->snapshot && spec->snapshot[0]) {
        pgspout_options *o = pgspout_options_new();
        int rc = o ? pgspout_options_set(o, "snapshot", spec->snapshot) : PGSPOUT_ENOMEM;
        if (rc != PGSPOUT_OK)
            pgs_conn_set_error(conn, "plan: %s", o ? pgspout_options_error(o) : "out of memory");
        pgspout_options_free(o);
        if (rc != PGSPOUT_OK)
            return rc;
    }
    pgspout_plan *p = calloc(1, sizeof *p);
    table_info t = {0};
    pgs_buf head = PGS_BUF_INIT;
    if (p == NULL)
        return PGSPOUT_ENOMEM;
    if (spec->snapshot)
        snprintf(p->snapshot, sizeof p->snapshot, "%s", spec->snapshot);
    int rc = resolve_table(conn, spec->table, &t);
    if (rc == PGSPOUT_OK && (p->table = strdup(t.quoted)) == NULL)
        rc = PGSPOUT_ENOMEM;
    if (rc == PGSPOUT_OK)
        rc = select_list(conn, t.oid, spec, t.quoted, &head);
    if (rc == PGSPOUT_OK && spec->key == NULL) {
        p->parts = calloc((size_t)spec->npartitions, sizeof *p->parts);
        rc = p->parts ? plan_blocks(conn, spec, &t, &head, p) : PGSPOUT_ENOMEM;
    } else if (rc == PGSPOUT_OK)
        rc = plan_keys(conn, spec, &t, &head, p);
    if (rc == PGSPOUT_ENOMEM)
        pgs_conn_set_error(conn, "out of memory while building a plan");
    table_free(&t);
    pgs_buf_free(&head);
    if (rc != PGSPOUT_OK) {
        pgspout_plan_free(p);
        return rc;
    }
    *out = p;
    return PGSPOUT_OK;
}

int pgspout_plan_npartitions(const pgspout_plan *p) { return p ? p->n : 0; }
const char *pgspout_plan_snapshot(const pgspout_plan *p) { return p ? p->snapshot : ""; }
const char *pgspout_plan_table(const pgspout_plan *p) { return p && p->table ? p->table : ""; }

int pgspout_plan_set_snapshot(pgspout_plan *p, const char *id)
{
    if (p == NULL || id == NULL)
        return PGSPOUT_EINVAL;
    pgspout_options *o = pgspout_options_new();
    if (o == NULL)
        return PGSPOUT_ENOMEM;
    int rc = pgspout_options_set(o, "snapshot", id);
    pgspout_options_free(o);
    if (rc == PGSPOUT_OK)
        snprintf(p->snapshot, sizeof p->snapshot, "%s", id);
    return rc;
}

const char *pgspout_plan_sql(const pgspout_plan *p, int i)
{
    return p && i >= 0 && i < p->n ? p->parts[i].sql : NULL;
}

int pgspout_plan_nparams(const pgspout_plan *p, int i)
{
    return p && i >= 0 && i < p->n ? p->parts[i].nparams : -1;
}

const char *const *pgspout_plan_params(const pgspout_plan *p, int i)
{
    return p && i >= 0 && i < p->n ? (const char *const *)p->parts[i].params : NULL;
}

int pgspout_plan_open(pgspout_conn *conn, const pgspout_plan *p, int i, const pgspout_options *opts,
                      pgspout_stream **out)
{
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (conn == NULL || p == NULL)
        return PGSPOUT_EINVAL;
    if (i < 0 || i >= p->n) {
        pgs_conn_set_error(conn, "plan_open: partition %d out of range [0, %d)", i, p->n);
        return PGSPOUT_EINVAL;
    }
    pgspout_options o;
    if (opts)
        o = *opts;
    else
        pgs_options_defaults(&o);
    if (p->snapshot[0])
        strcpy(o.snapshot, p->snapshot);
    return pgspout_stream_open(conn, p->parts[i].sql, p->parts[i].nparams,
                               (const char *const *)p->parts[i].params, &o, out);
}

/* ------------------------------------------------------------------- JSON */

char *pgspout_plan_json(const pgspout_plan *p)
{
    if (p == NULL)
        return NULL;
    pgs_buf b = PGS_BUF_INIT;
    pgs_buf_puts(&b, "{\"pgspout_plan\":1,\"snapshot\":");
    pgs_json_string(&b, p->snapshot, strlen(p->snapshot));
    pgs_buf_puts(&b, ",\"table\":");
    const char *t = p->table ? p->table : "";
    pgs_json_string(&b, t, strlen(t));
    pgs_buf_puts(&b, ",\"partitions\":[");
    for (int i = 0; i < p->n; i++) {
        pgs_buf_puts(&b, i ? ",{\"sql\":" : "{\"sql\":");
        pgs_json_string(&b, p->parts[i].sql, strlen(p->parts[i].sql));
        pgs_buf_puts(&b, ",\"params\":[");
        for (int j = 0; j < p->parts[i].nparams; j++) {
            const char *v = p->parts[i].params[j];
            if (j)
                pgs_buf_putc(&b, ',');
            if (v == NULL)
                pgs_buf_puts(&b, "null");
            else
                pgs_json_string(&b, v, strlen(v));
        }
        pgs_buf_puts(&b, "]}");
    }
    pgs_buf_puts(&b, "]}");
    if (b.oom) {
        pgs_buf_free(&b);
        return NULL;
    }
    return pgs_buf_steal(&b);
}

/* A parser for the plan's own shape: an object with "pgspout_plan": 1,
 * "snapshot", "table" (strings) and "partitions" (an array of objects with
 * "sql", a string, and "params", an array of strings and nulls). Unknown
 * keys are skipped, whatever their value. */
typedef struct jp {
    const char *s;
    const char *err;
    int oom;
} jp;

static void ws(jp *j)
{
    while (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')
        j->s++;
}

static int expect(jp *j, char c)
{
    ws(j);
    if (*j->s != c) {
        j->err = "malformed JSON";
        return -1;
    }
    j->s++;
    return 0;
}

static void put_utf8(pgs_buf *b, unsigned cp)
{
    char u[4];
    int n;
    if (cp < 0x80)
        u[0] = (char)cp, n = 1;
    else if (cp < 0x800)
        u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F)),
        u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F)),
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    pgs_buf_append(b, u, (size_t)n);
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int c = (unsigned char)p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

/* A string into a malloc'd *out (NUL-terminated; a \u0000 is refused). */
static int jstring(jp *j, char **out)
{
    if (expect(j, '"') < 0)
        return -1;
    pgs_buf b = PGS_BUF_INIT;
    pgs_buf_reserve(&b, 16);
    while (*j->s != '"') {
        unsigned char c = (unsigned char)*j->s;
        if (c == '\0' || c < 0x20) {
            j->err = "malformed JSON string";
            pgs_buf_free(&b);
            return -1;
        }
        if (c != '\\') {
            pgs_buf_putc(&b, (char)c);
            j->s++;
            continue;
        }
        char e = j->s[1], plain = 0;
        switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        default: break;
        }
        if (plain) {
            pgs_buf_putc(&b, plain);
            j->s += 2;
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || hex4(j->s + 2, &cp) < 0) {
            j->err = "malformed JSON escape";
            pgs_buf_free(&b);
            return -1;
        }
        j->s += 6;
        if (cp >= 0xD800 && cp < 0xDC00 && j->s[0] == '\\' && j->s[1] == 'u' &&
            hex4(j->s + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            j->s += 6;
        } else if (cp >= 0xD800 && cp < 0xE000)
            cp = 0xFFFD;
        if (cp == 0) {
            j->err = "a NUL character in a JSON string";
            pgs_buf_free(&b);
            return -1;
        }
        put_utf8(&b, cp);
    }
    j->s++;
    if (b.oom) {
        j->oom = 1;
        j->err = "out of memory";
        pgs_buf_free(&b);
        return -1;
    }
    *out = pgs_buf_steal(&b);
    return *out ? 0 : (j->oom = 1, j->err = "out of memory", -1);
}

static int jskip(jp *j, int depth)
{
    ws(j);
    if (depth > 64) {
        j->err = "JSON nested too deeply";
        return -1;
    }
    char c = *j->s;
    if (c == '"') {
        char *s = NULL;
        int rc = jstring(j, &s);
        free(s);
        return rc;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->s++;
        ws(j);
        if (*j->s == close) {
            j->s++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                char *k = NULL;
                if (jstring(j, &k) < 0)
                    return -1;
                free(k);
                if (expect(j, ':') < 0)
                    return -1;
            }
            if (jskip(j, depth + 1) < 0)
                return -1;
            ws(j);
            if (*j->s == ',') {
                j->s++;
                continue;
            }
            return expect(j, close);
        }
    }
    const char *start = j->s;
    while (*j->s && (isalnum((unsigned char)*j->s) || strchr("+-.", *j->s)))
        j->s++;
    if (j->s == start) {
        j->err = "malformed JSON value";
        return -1;
    }
    return 0;
}

static int jpart(jp *j, pgspout_plan *p)
{
    part pt = {0};
    int have_sql = 0, cap = 0, rc = -1;
    if (expect(j, '{') < 0)
        return -1;
    ws(j);
    if (*j->s == '}') {
        j->err = "a partition without sql";
        return -1;
    }
    for (;;) {
        char *k = NULL;
        if (jstring(j, &k) < 0 || expect(j, ':') < 0) {
            free(k);
            goto out;
        }
        if (strcmp(k, "sql") == 0 && !have_sql) {
            free(k);
            if (jstring(j, &pt.sql) < 0)
                goto out;
            have_sql = 1;
        } else if (strcmp(k, "params") == 0 && pt.params == NULL) {
            free(k);
            if (expect(j, '[') < 0)
                goto out;
            pt.params = calloc(1, sizeof *pt.params);
            cap = 1;
            if (pt.params == NULL)
                goto nomem;
            ws(j);
            if (*j->s == ']')
                j->s++;
            else
                for (;;) {
                    if (pt.nparams == cap) {
                        char **np = realloc(pt.params, (size_t)cap * 2 * sizeof *np);
                        if (np == NULL)
                            goto nomem;
                        pt.params = np;
                        cap *= 2;
                    }
                    ws(j);
                    if (strncmp(j->s, "null", 4) == 0) {
                        j->s += 4;
                        pt.params[pt.nparams++] = NULL;
                    } else if (jstring(j, &pt.params[pt.nparams]) < 0)
                        goto out;
                    else
                        pt.nparams++;
                    if (pt.nparams > 65535) {
                        j->err = "more than 65535 parameters";
                        goto out;
                    }
                    ws(j);
                    if (*j->s == ',') {
                        j->s++;
                        continue;
                    }
                    if (expect(j, ']') < 0)
                        goto out;
                    break;
                }
        } else {
            free(k);
            if (jskip(j, 1) < 0)
                goto out;
        }
        ws(j);
        if (*j->s == ',') {
            j->s++;
            continue;
        }
        if (expect(j, '}') < 0)
            goto out;
        break;
    }
    if (!have_sql) {
        j->err = "a partition without sql";
        goto out;
    }
    p->parts[p->n++] = pt;
    return 0;
nomem:
    j->oom = 1;
    j->err = "out of memory";
out:
    free(pt.sql);
    for (int i = 0; i < pt.nparams; i++)
        free(pt.params[i]);
    free(pt.params);
    return rc;
}

static int jplan(jp *j, pgspout_plan *p)
{
    int version = 0, cap = 0;
    if (expect(j, '{') < 0)
        return -1;
    ws(j);
    if (*j->s == '}') {
        j->err = "not a pgspout plan (no \"pgspout_plan\": 1)";
        return -1;
    }
    for (;;) {
        char *k = NULL;
        if (jstring(j, &k) < 0 || expect(j, ':') < 0) {
            free(k);
            return -1;
        }
        ws(j);
        if (strcmp(k, "pgspout_plan") == 0) {
            version = strncmp(j->s, "1", 1) == 0 && !isdigit((unsigned char)j->s[1]) ? 1 : -1;
            free(k);
            if (jskip(j, 1) < 0)
                return -1;
        } else if (strcmp(k, "snapshot") == 0 || strcmp(k, "table") == 0) {
            int snap = k[0] == 's';
            free(k);
            char *v = NULL;
            if (jstring(j, &v) < 0)
                return -1;
            if (snap && pgspout_plan_set_snapshot(p, v) != PGSPOUT_OK) {
                free(v);
                j->err = "the snapshot is not a snapshot id";
                return -1;
            }
            if (snap)
                free(v);
            else {
                free(p->table);
                p->table = v;
            }
        } else if (strcmp(k, "partitions") == 0 && p->parts == NULL) {
            free(k);
            if (expect(j, '[') < 0)
                return -1;
            cap = 4;
            if ((p->parts = calloc((size_t)cap, sizeof *p->parts)) == NULL)
                return j->oom = 1, j->err = "out of memory", -1;
            ws(j);
            if (*j->s == ']')
                j->s++;
            else
                for (;;) {
                    if (p->n == cap) {
                        part *np = realloc(p->parts, (size_t)cap * 2 * sizeof *np);
                        if (np == NULL)
                            return j->oom = 1, j->err = "out of memory", -1;
                        p->parts = np;
                        cap *= 2;
                    }
                    if (jpart(j, p) < 0)
                        return -1;
                    ws(j);
                    if (*j->s == ',') {
                        j->s++;
                        continue;
                    }
                    if (expect(j, ']') < 0)
                        return -1;
                    break;
                }
        } else {
            free(k);
            if (jskip(j, 1) < 0)
                return -1;
        }
        ws(j);
        if (*j->s == ',') {
            j->s++;
            continue;
        }
        if (expect(j, '}') < 0)
            return -1;
        break;
    }
    ws(j);
    if (*j->s != '\0') {
        j->err = "text after the plan's JSON object";
        return -1;
    }
    if (version != 1) {
        j->err = "not a pgspout plan of version 1 (\"pgspout_plan\": 1)";
        return -1;
    }
    if (p->n == 0) {
        j->err = "a plan without partitions";
        return -1;
    }
    return 0;
}

int pgspout_plan_from_json(const char *json, pgspout_plan **out, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (out == NULL)
        return PGSPOUT_EINVAL;
    *out = NULL;
    if (json == NULL)
        return PGSPOUT_EINVAL;
    pgspout_plan *p = calloc(1, sizeof *p);
    if (p == NULL)
        return PGSPOUT_ENOMEM;
    jp j = {json, NULL, 0};
    if (jplan(&j, p) < 0) {
        if (errmsg) {
            size_t at = (size_t)(j.s - json);
            char buf[160];
            snprintf(buf, sizeof buf, "plan JSON: %s at byte %zu", j.err ? j.err : "malformed", at);
            *errmsg = strdup(buf);
        }
        pgspout_plan_free(p);
        return j.oom ? PGSPOUT_ENOMEM : PGSPOUT_EVALUE;
    }
    *out = p;
    return PGSPOUT_OK;
}
