/*
 * stream_rows.c - stream a query's rows to stdout with the pgspout C API.
 *
 *   stream_rows DSN SQL [PARAM...]
 *
 * Each row is printed as one line of tab-separated text values in the format
 * of COPY ... TO STDOUT (NULL as \N; tab, newline, carriage return and
 * backslash escaped). Column names, a summary and errors go to stderr; the
 * exit code is 0 when every row arrived, 1 otherwise.
 *
 * Parameters are sent separately from the SQL ($1, $2, ...), never pasted
 * into it:
 *   stream_rows "dbname=app" "SELECT id, name FROM users WHERE id > $1" 1000
 */
#include <pgspout.h>

#include <stdio.h>
#include <string.h>

/* Write a value escaped the way COPY's text format does. */
static void put_value(const char *v, size_t len, FILE *out)
{
    for (size_t i = 0; i < len; i++) {
        switch (v[i]) {
        case '\t': fputs("\\t", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\\': fputs("\\\\", out); break;
        default: putc(v[i], out);
        }
    }
}

static int set_option(pgspout_options *opts, const char *key, const char *value)
{
    int rc = pgspout_options_set(opts, key, value);
    if (rc != PGSPOUT_OK)
        fprintf(stderr, "stream_rows: option %s=%s: %s (%s)\n", key, value, pgspout_strerror(rc),
                pgspout_options_error(opts));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DSN SQL [PARAM...]\n", argv[0]);
        return 2;
    }
    const char *dsn = argv[1];
    const char *sql = argv[2];
    int nparams = argc - 3;
    const char *const *params = (const char *const *)(argv + 3);

    /* The library we run against must be the major version we compiled for. */
    if (pgspout_version_number() / 10000 != PGSPOUT_VERSION_MAJOR) {
        fprintf(stderr, "stream_rows: built for pgspout %s, running with %s\n",
                PGSPOUT_VERSION_STRING, pgspout_version());
        return 1;
    }

    /* Connect. On failure the handle still carries the reason; close it. */
    pgspout_conn *conn = NULL;
    int rc = pgspout_connect(dsn, &conn);
    if (rc != PGSPOUT_OK) {
        fprintf(stderr, "stream_rows: connect: %s: %s\n", pgspout_strerror(rc),
                conn ? pgspout_conn_error(conn) : "");
        pgspout_conn_close(conn);
        return 1;
    }

    /* Options are string key/values with units; the stream copies them. */
    pgspout_options *opts = pgspout_options_new();
    if (opts == NULL) {
        fprintf(stderr, "stream_rows: out of memory\n");
        pgspout_conn_close(conn);
        return 1;
    }
    if (set_option(opts, "chunk_rows", "1000") != PGSPOUT_OK ||
        set_option(opts, "max_memory", "16MB") != PGSPOUT_OK ||
        set_option(opts, "label", "example") != PGSPOUT_OK) {
        pgspout_options_free(opts);
        pgspout_conn_close(conn);
        return 1;
    }

    pgspout_stream *s = NULL;
    rc = pgspout_stream_open(conn, sql, nparams, params, opts, &s);
    pgspout_options_free(opts);
    if (rc != PGSPOUT_OK) {
        /* ESQL, ECONN, ETIMEOUT... come with a failed stream to read. */
        fprintf(stderr, "stream_rows: %s: %s\n", pgspout_strerror(rc),
                s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
        if (s && *pgspout_stream_sqlstate(s))
            fprintf(stderr, "stream_rows: sqlstate=%s\n", pgspout_stream_sqlstate(s));
        pgspout_stream_close(s);
        pgspout_conn_close(conn);
        return 1;
    }

    int ncols = pgspout_stream_ncols(s);
    fprintf(stderr, "stream_rows: columns:");
    for (int c = 0; c < ncols; c++)
        fprintf(stderr, " %s(oid %u)", pgspout_stream_colname(s, c), pgspout_stream_coltype(s, c));
    fputc('\n', stderr);

    /* The pull loop: OK with a row, DONE at the end, negative on error. The
     * row and its values are valid until the next call on the stream. */
    const pgspout_row *row;
    while ((rc = pgspout_stream_next(s, &row)) == PGSPOUT_OK) {
        for (int c = 0; c < ncols; c++) {
            if (c > 0)
                putchar('\t');
            if (pgspout_row_isnull(row, c) == 1) {
                fputs("\\N", stdout);
            } else {
                size_t len = 0;
                const char *v = pgspout_row_value(row, c, &len);
                put_value(v, len, stdout);
            }
        }
        putchar('\n');
    }
    int failed = rc != PGSPOUT_DONE;
    if (failed) {
        /* An error mid-stream is never a normal end: report it. The code
         * says what kind of failure (PGSPOUT_ESQL, ECONN, ETIMEOUT...), the
         * SQLSTATE which server error, for programs that branch on it. */
        const char *sqlstate = pgspout_stream_sqlstate(s);
        fprintf(stderr, "stream_rows: stream failed (%s): %s\n", pgspout_code_name(rc),
                pgspout_stream_error(s));
        if (*sqlstate)
            fprintf(stderr, "stream_rows: sqlstate=%s%s\n", sqlstate,
                    strncmp(sqlstate, "08", 2) == 0 ? " (connection problem)" : "");
    }

    /* Stats: set .size so that older and newer libraries agree on layout. */
    pgspout_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (pgspout_stream_stats(s, &st) == PGSPOUT_OK)
        fprintf(stderr,
                "stream_rows: %llu rows, %llu bytes in %.3f s, state %s, "
                "peak buffered %llu bytes, first row after %.3f s\n",
                (unsigned long long)st.rows_delivered, (unsigned long long)st.bytes_received,
                st.elapsed, pgspout_state_name(st.state),
                (unsigned long long)st.peak_buffered_bytes, st.time_to_first_row);

    pgspout_stream_close(s);
    pgspout_conn_close(conn);
    if (fflush(stdout) != 0) {
        perror("stream_rows: stdout");
        return 1;
    }
    return failed ? 1 : 0;
}
