/* output.c - row formats of the pgspout command.
 * CSV follows RFC 4180 (NULL is an empty unquoted field, an empty string is
 * ""), TSV follows PostgreSQL's COPY text format (\N for NULL; tab, newline,
 * carriage return and backslash escaped). NDJSON is one JSON object per line;
 * JSON is one array of the same objects, "[" rows separated by ",\n" "]", so
 * that zero rows give "[]" and a stream that failed midway never gives a
 * valid document. */
#include "output.h"

#include <string.h>

/* per thread: --partitions writes one output per thread */
_Thread_local unsigned long long out_bytes_written;

/* One JSON stream per thread: whether a row came already (the next one
 * needs ",\n" before it). */
static _Thread_local int g_json_rows;

static void put(FILE *f, const char *p, size_t n)
{
    out_bytes_written += n;
    fwrite(p, 1, n, f);
}

static void putch(FILE *f, char ch)
{
    out_bytes_written++;
    putc(ch, f);
}

int out_format(const char *name)
{
    if (strcmp(name, "ndjson") == 0)
        return FMT_NDJSON;
    if (strcmp(name, "csv") == 0)
        return FMT_CSV;
    if (strcmp(name, "tsv") == 0)
        return FMT_TSV;
    if (strcmp(name, "json") == 0)
        return FMT_JSON;
    return -1;
}

static void csv_field(FILE *f, const char *v, size_t n, int isnull)
{
    if (isnull)
        return;
    if (n > 0 && strcspn(v, ",\"\r\n") == n) {
        put(f, v, n);
        return;
    }
    putch(f, '"');
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"') {
            put(f, v + start, i + 1 - start); /* up to and with the quote */
            putch(f, '"');
            start = i + 1;
        }
    }
    put(f, v + start, n - start);
    putch(f, '"');
}

static void tsv_field(FILE *f, const char *v, size_t n, int isnull)
{
    if (isnull) {
        put(f, "\\N", 2);
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
            put(f, v + start, i - start);
            put(f, esc, 2);
            start = i + 1;
        }
    }
    put(f, v + start, n - start);
}

int out_header(FILE *f, int fmt, int header, const pgspout_stream *s)
{
    if (fmt == FMT_JSON) {
        g_json_rows = 0;
        putch(f, '[');
        return ferror(f) ? OUT_EWRITE : 0;
    }
    if (fmt == FMT_NDJSON || !header)
        return 0;
    int n = pgspout_stream_ncols(s);
    for (int c = 0; c < n; c++) {
        const char *name = pgspout_stream_colname(s, c);
        if (c)
            putch(f, fmt == FMT_CSV ? ',' : '\t');
        (fmt == FMT_CSV ? csv_field : tsv_field)(f, name, strlen(name), 0);
    }
    putch(f, '\n');
    return ferror(f) ? OUT_EWRITE : 0;
}

/* The NDJSON lines of text as array elements: each line's newline becomes
 * the separator before the next row. */
static void json_rows(FILE *f, const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (g_json_rows++)
            put(f, ",\n", 2);
        put(f, p, n);
        p += n + 1;
    }
}

int out_chunk(FILE *f, int fmt, pgspout_stream *s, const pgspout_chunk *c, int *rc)
{
    if (fmt == FMT_NDJSON || fmt == FMT_JSON) {
        const char *text;
        size_t len;
        if ((*rc = pgspout_chunk_ndjson(s, c, &text, &len)) != PGSPOUT_OK)
            return OUT_ELIB;
        if (fmt == FMT_JSON)
            json_rows(f, text, len);
        else
            put(f, text, len);
        return ferror(f) ? OUT_EWRITE : 0;
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
                putch(f, sep);
            (fmt == FMT_CSV ? csv_field : tsv_field)(f, v, len, pgspout_row_isnull(r, col));
        }
        putch(f, '\n');
    }
    return ferror(f) ? OUT_EWRITE : 0;
}

size_t out_footer_size(int fmt) { return fmt == FMT_JSON ? 2 : 0; }

int out_footer(FILE *f, int fmt)
{
    if (fmt == FMT_JSON)
        put(f, "]\n", 2);
    return ferror(f) ? OUT_EWRITE : 0;
}

void out_human_bytes(char *dst, size_t n, double b)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(dst, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}
