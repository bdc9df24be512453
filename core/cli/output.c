/* output.c - row formats of the pgspout command.
 * CSV follows RFC 4180 (NULL is an empty unquoted field, an empty string is
 * ""), TSV follows PostgreSQL's COPY text format (\N for NULL; tab, newline,
 * carriage return and backslash escaped). */
#include "output.h"

#include <string.h>

int out_format(const char *name)
{
    if (strcmp(name, "ndjson") == 0)
        return FMT_NDJSON;
    if (strcmp(name, "csv") == 0)
        return FMT_CSV;
    if (strcmp(name, "tsv") == 0)
        return FMT_TSV;
    return -1;
}

static void csv_field(FILE *f, const char *v, size_t n, int isnull)
{
    if (isnull)
        return;
    if (n > 0 && strcspn(v, ",\"\r\n") == n) {
        fwrite(v, 1, n, f);
        return;
    }
    putc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"')
            putc('"', f);
        putc(v[i], f);
    }
    putc('"', f);
}

static void tsv_field(FILE *f, const char *v, size_t n, int isnull)
{
    if (isnull) {
        fputs("\\N", f);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *esc = v[i] == '\t'   ? "\\t"
                          : v[i] == '\n' ? "\\n"
                          : v[i] == '\r' ? "\\r"
                          : v[i] == '\\' ? "\\\\"
                                         : NULL;
        if (esc) {
            fwrite(v + start, 1, i - start, f);
            fputs(esc, f);
            start = i + 1;
        }
    }
    fwrite(v + start, 1, n - start, f);
}

int out_header(FILE *f, int fmt, const pgspout_stream *s)
{
    if (fmt == FMT_NDJSON)
        return 0;
    int n = pgspout_stream_ncols(s);
    for (int c = 0; c < n; c++) {
        const char *name = pgspout_stream_colname(s, c);
        if (c)
            putc(fmt == FMT_CSV ? ',' : '\t', f);
        (fmt == FMT_CSV ? csv_field : tsv_field)(f, name, strlen(name), 0);
    }
    putc('\n', f);
    return ferror(f) ? OUT_EWRITE : 0;
}

int out_chunk(FILE *f, int fmt, pgspout_stream *s, const pgspout_chunk *c, int *rc)
{
    if (fmt == FMT_NDJSON) {
        const char *text;
        size_t len;
        if ((*rc = pgspout_chunk_ndjson(s, c, &text, &len)) != PGSPOUT_OK)
            return OUT_ELIB;
        return fwrite(text, 1, len, f) == len ? 0 : OUT_EWRITE;
    }
    char sep = fmt == FMT_CSV ? ',' : '\t';
    int nrows = pgspout_chunk_nrows(c);
    for (int i = 0; i < nrows; i++) {
        const pgspout_row *r = pgspout_chunk_row(c, i);
        int ncols = pgspout_row_ncols(r);
        for (int col = 0; col < ncols; col++) {
            size_t len;
            const char *v = pgspout_row_value(r, col, &len);
            if (col)
                putc(sep, f);
            (fmt == FMT_CSV ? csv_field : tsv_field)(f, v, len, pgspout_row_isnull(r, col));
        }
        putc('\n', f);
    }
    return ferror(f) ? OUT_EWRITE : 0;
}
