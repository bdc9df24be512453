/* fuzz_csv.c - the CLI's CSV and TSV writers (core/cli/output.c) on
 * arbitrary values, through a fake of the few pgspout calls they make.
 *
 * Input: byte 0 = column count (1 + bits 0-1) and format (bit 2: TSV); the
 * rest is split into fields at 0x1F; a field that is exactly 0x1E is SQL
 * NULL. The first ncols fields name the columns, the others fill rows.
 *
 * Checked: the output parses back (RFC 4180 for CSV, PostgreSQL COPY text
 * format for TSV) into exactly the header and rows that went in, NULLs
 * included, distinguishable from empty strings.
 */
#include "output.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_csv: check failed: %s (line %d)\n", #cond, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------ the fake pgspout API */

typedef struct fval {
    char *p; /* NUL-terminated (PostgreSQL text never holds NUL) */
    size_t n;
    int isnull;
} fval;

struct pgspout_row {
    fval *v;
    int ncols;
};
struct pgspout_chunk {
    struct pgspout_row *rows;
    int nrows;
};
struct pgspout_stream {
    fval *names;
    int ncols;
};

int pgspout_chunk_nrows(const pgspout_chunk *c) { return c ? c->nrows : 0; }
const pgspout_row *pgspout_chunk_row(const pgspout_chunk *c, int i)
{
    return c && i >= 0 && i < c->nrows ? &c->rows[i] : NULL;
}
int pgspout_row_ncols(const pgspout_row *r) { return r ? r->ncols : 0; }
const char *pgspout_row_value(const pgspout_row *r, int col, size_t *len)
{
    if (!r || col < 0 || col >= r->ncols)
        return NULL;
    if (len)
        *len = r->v[col].isnull ? 0 : r->v[col].n;
    return r->v[col].isnull ? "" : r->v[col].p;
}
int pgspout_row_isnull(const pgspout_row *r, int col)
{
    return r && col >= 0 && col < r->ncols ? r->v[col].isnull : -1;
}
int pgspout_stream_ncols(const pgspout_stream *s) { return s ? s->ncols : 0; }
const char *pgspout_stream_colname(const pgspout_stream *s, int col)
{
    return s && col >= 0 && col < s->ncols ? s->names[col].p : NULL;
}
int pgspout_chunk_ndjson(pgspout_stream *s, const pgspout_chunk *c, const char **out, size_t *len)
{
    (void)s, (void)c, (void)out, (void)len;
    return PGSPOUT_EINVAL; /* not fuzzed here */
}

/* ------------------------------------------------------------ readers */

typedef struct rfield {
    char *p;
    size_t n;
    int isnull;
} rfield;

/* RFC 4180 with \n line ends: returns fields read into f (up to max), and
 * advances *pos past the record; -1 on a syntax error. An empty unquoted
 * field is NULL (the writer's convention), "" is the empty string. */
static int csv_record(const char *s, size_t n, size_t *pos, rfield *f, int max, char *scratch)
{
    size_t i = *pos;
    int k = 0;
    size_t so = 0;
    for (;;) {
        if (k >= max)
            return -1;
        rfield *r = &f[k++];
        r->p = scratch + so;
        r->n = 0;
        r->isnull = 0;
        if (i < n && s[i] == '"') {
            i++;
            for (;;) {
                if (i >= n)
                    return -1;
                if (s[i] == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        scratch[so++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                scratch[so++] = s[i++];
            }
        } else {
            size_t st = i;
            while (i < n && s[i] != ',' && s[i] != '\n') {
                if (s[i] == '"' || s[i] == '\r')
                    return -1; /* must have been quoted */
                scratch[so++] = s[i++];
            }
            if (i == st)
                r->isnull = 1;
        }
        r->n = (size_t)(scratch + so - r->p);
        if (i >= n)
            return -1; /* every record ends in \n */
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] != '\n')
            return -1;
        *pos = i + 1;
        return k;
    }
}

/* COPY text format: \N alone is NULL; \t \n \r \\ are escapes. */
static int tsv_record(const char *s, size_t n, size_t *pos, rfield *f, int max, char *scratch)
{
    size_t i = *pos, so = 0;
    int k = 0;
    for (;;) {
        if (k >= max)
            return -1;
        rfield *r = &f[k++];
        r->p = scratch + so;
        r->isnull = 0;
        size_t st = i;
        if (n - i >= 2 && s[i] == '\\' && s[i + 1] == 'N' &&
            (i + 2 == n || s[i + 2] == '\t' || s[i + 2] == '\n')) {
            r->isnull = 1;
            i += 2;
        } else {
            while (i < n && s[i] != '\t' && s[i] != '\n') {
                if (s[i] == '\r')
                    return -1; /* must have been escaped */
                if (s[i] == '\\') {
                    if (i + 1 >= n)
                        return -1;
                    char e = s[i + 1];
                    scratch[so++] = e == 't'    ? '\t'
                                    : e == 'n'  ? '\n'
                                    : e == 'r'  ? '\r'
                                    : e == '\\' ? '\\'
                                                : 0;
                    if (scratch[so - 1] == 0)
                        return -1;
                    i += 2;
                    continue;
                }
                scratch[so++] = s[i++];
            }
        }
        (void)st;
        r->n = (size_t)(scratch + so - r->p);
        if (i >= n)
            return -1;
        if (s[i] == '\t') {
            i++;
            continue;
        }
        *pos = i + 1;
        return k;
    }
}

/* ------------------------------------------------------------- target */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 8192)
        return 0;
    int ncols = 1 + (data[0] & 3);
    int fmt = (data[0] & 4) ? FMT_TSV : FMT_CSV;
    /* split the rest into fields */
    size_t nf = 1;
    for (size_t i = 1; i < size; i++)
        nf += data[i] == 0x1F;
    fval *fv = calloc(nf + (size_t)ncols, sizeof *fv);
    size_t k = 0, st = 1;
    for (size_t i = 1; i <= size; i++) {
        if (i == size || data[i] == 0x1F) {
            fval *f = &fv[k++];
            f->n = i - st;
            f->p = malloc(f->n + 1);
            memcpy(f->p, data + st, f->n);
            for (size_t j = 0; j < f->n; j++)
                if (f->p[j] == '\0')
                    f->p[j] = '\x01';
            f->p[f->n] = '\0';
            f->isnull = f->n == 1 && f->p[0] == 0x1E;
            st = i + 1;
        }
    }
    while (k < (size_t)ncols) { /* enough column names */
        fv[k].p = strdup("c");
        fv[k].n = 1;
        k++;
    }
    for (int c = 0; c < ncols; c++) /* names are never NULL */
        if (fv[c].isnull)
            fv[c].isnull = 0;
    struct pgspout_stream s = {fv, ncols};
    size_t nvals = k - (size_t)ncols;
    int nrows = (int)(nvals / (size_t)ncols);
    struct pgspout_row *rows = calloc((size_t)nrows + 1, sizeof *rows);
    for (int r = 0; r < nrows; r++)
        rows[r] = (struct pgspout_row){fv + ncols + (size_t)r * ncols, ncols};
    struct pgspout_chunk ch = {rows, nrows};

    char *text = NULL;
    size_t tlen = 0;
    FILE *f = open_memstream(&text, &tlen);
    int lrc = 0;
    CHECK(out_header(f, fmt, 1, &s) == 0);
    CHECK(out_chunk(f, fmt, &s, &ch, &lrc) == 0);
    fclose(f);

    /* read it back */
    char *scratch = malloc(tlen + 1);
    rfield got[8];
    size_t pos = 0;
    for (int r = -1; r < nrows; r++) {
        int n = fmt == FMT_CSV ? csv_record(text, tlen, &pos, got, 8, scratch)
                               : tsv_record(text, tlen, &pos, got, 8, scratch);
        if (n != ncols) {
            fprintf(stderr, "fuzz_csv: %s record %d: %d fields, want %d\n",
                    fmt == FMT_CSV ? "CSV" : "TSV", r, n, ncols);
            abort();
        }
        const fval *want = r < 0 ? fv : rows[r].v;
        for (int c = 0; c < ncols; c++) {
            if (want[c].isnull) {
                CHECK(got[c].isnull);
            } else {
                CHECK(!got[c].isnull);
                CHECK(got[c].n == want[c].n && memcmp(got[c].p, want[c].p, want[c].n) == 0);
            }
        }
    }
    CHECK(pos == tlen);
    free(scratch);
    free(text);
    for (size_t i = 0; i < k; i++)
        free(fv[i].p);
    free(fv);
    free(rows);
    return 0;
}
