/*
 * pgspout_c.c - the same work as raw_libpq.c through the pgspout C API:
 * every value's length summed, its first byte read and the non-NULL values
 * counted.
 *
 *   pgspout_c [--chunk] DSN SQL [KEY=VALUE...]
 *
 * Options (e.g. chunk_rows=10000) go to pgspout_options_set. --chunk iterates
 * with pgspout_stream_next_chunk instead of pgspout_stream_next. Prints
 * "rows=N values=V bytes=B check=C peak_buffered=P" on stdout; errors on
 * stderr, exit 1.
 */
#include <pgspout.h>

#include <stdio.h>
#include <string.h>

static unsigned long long values, bytes, check;

static void touch(const pgspout_row *row, int ncols)
{
    for (int c = 0; c < ncols; c++) {
        size_t len = 0;
        const char *v = pgspout_row_value(row, c, &len);
        bytes += len;
        if (len > 0)
            check += (unsigned char)v[0];
        if (pgspout_row_isnull(row, c) == 0)
            values++;
    }
}

int main(int argc, char **argv)
{
    int chunked = 0, a = 1;
    if (a < argc && strcmp(argv[a], "--chunk") == 0) {
        chunked = 1;
        a++;
    }
    if (argc - a < 2) {
        fprintf(stderr, "usage: %s [--chunk] DSN SQL [KEY=VALUE...]\n", argv[0]);
        return 2;
    }
    const char *dsn = argv[a], *sql = argv[a + 1];
    pgspout_options *opts = pgspout_options_new();
    if (opts == NULL)
        return 1;
    for (int i = a + 2; i < argc; i++) {
        char key[64];
        const char *eq = strchr(argv[i], '=');
        if (eq == NULL || (size_t)(eq - argv[i]) >= sizeof key) {
            fprintf(stderr, "pgspout_c: bad option %s\n", argv[i]);
            return 2;
        }
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = '\0';
        if (pgspout_options_set(opts, key, eq + 1) != PGSPOUT_OK) {
            fprintf(stderr, "pgspout_c: %s\n", pgspout_options_error(opts));
            return 2;
        }
    }

    pgspout_conn *conn = NULL;
    int rc = pgspout_connect(dsn, &conn);
    if (rc != PGSPOUT_OK) {
        fprintf(stderr, "pgspout_c: connect: %s\n",
                conn ? pgspout_conn_error(conn) : pgspout_strerror(rc));
        pgspout_conn_close(conn);
        return 1;
    }
    pgspout_stream *s = NULL;
    rc = pgspout_stream_open(conn, sql, 0, NULL, opts, &s);
    pgspout_options_free(opts);
    if (rc != PGSPOUT_OK) {
        fprintf(stderr, "pgspout_c: open: %s\n",
                s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
        pgspout_stream_close(s);
        pgspout_conn_close(conn);
        return 1;
    }
    int ncols = pgspout_stream_ncols(s);
    unsigned long long rows = 0;
    if (chunked) {
        const pgspout_chunk *ch;
        while ((rc = pgspout_stream_next_chunk(s, 0, &ch)) == PGSPOUT_OK) {
            int n = pgspout_chunk_nrows(ch);
            for (int i = 0; i < n; i++)
                touch(pgspout_chunk_row(ch, i), ncols);
            rows += (unsigned long long)n;
        }
    } else {
        const pgspout_row *row;
        while ((rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK) {
            touch(row, ncols);
            rows++;
        }
    }
    if (rc != PGSPOUT_DONE) {
        fprintf(stderr, "pgspout_c: %s: %s\n", pgspout_strerror(rc), pgspout_stream_error(s));
        pgspout_stream_close(s);
        pgspout_conn_close(conn);
        return 1;
    }
    pgspout_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    pgspout_stream_stats(s, &st);
    printf("rows=%llu values=%llu bytes=%llu check=%llu peak_buffered=%llu\n", rows, values, bytes,
           check, (unsigned long long)st.peak_buffered_bytes);
    pgspout_stream_close(s);
    pgspout_conn_close(conn);
    return 0;
}
