/*
 * arrow_columns.c - hand a pgspout stream to an Arrow consumer.
 *
 *   arrow_columns DSN SQL
 *
 * pgspout_stream_arrow() fills a struct ArrowArrayStream, the Arrow C stream
 * interface: anything that reads Arrow takes it as is (pyarrow's
 * RecordBatchReader._import_from_c, DuckDB's arrow scan, nanoarrow, Arrow
 * C++'s ImportRecordBatchReader, polars). The consumer below knows nothing
 * of pgspout: it reads the schema and the record batches and prints, per
 * column, its name, Arrow format, values and NULLs, and the sum of int64
 * ("l") columns or the bytes of utf8 ("u") ones. Exit code 0 when every
 * batch arrived; the error (code name, message, SQLSTATE) on stderr
 * otherwise.
 *
 *   arrow_columns "dbname=app" "SELECT id, name FROM users"
 */
#include <pgspout.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* An Arrow consumer: only the C stream interface. */
static int summarize(struct ArrowArrayStream *in)
{
    struct ArrowSchema schema;
    if (in->get_schema(in, &schema) != 0) {
        fprintf(stderr, "schema: %s\n", in->get_last_error(in));
        return 1;
    }
    int64_t ncols = schema.n_children, rows = 0, batches = 0;
    int64_t values[64] = {0}, nulls[64] = {0}, sums[64] = {0};
    if (ncols > 64)
        ncols = 64;
    for (;;) {
        struct ArrowArray batch;
        if (in->get_next(in, &batch) != 0) {
            fprintf(stderr, "after %" PRId64 " rows: %s\n", rows, in->get_last_error(in));
            schema.release(&schema);
            return 1;
        }
        if (batch.release == NULL) /* the end */
            break;
        for (int64_t c = 0; c < ncols; c++) {
            const struct ArrowArray *col = batch.children[c];
            const char *format = schema.children[c]->format;
            const uint8_t *valid = col->buffers[0];
            for (int64_t i = 0; i < col->length; i++) {
                if (valid != NULL && !(valid[i / 8] >> (i % 8) & 1)) {
                    nulls[c]++;
                    continue;
                }
                values[c]++;
                if (strcmp(format, "l") == 0)
                    sums[c] += ((const int64_t *)col->buffers[1])[i];
                else if (strcmp(format, "u") == 0)
                    sums[c] += ((const int32_t *)col->buffers[1])[i + 1] -
                               ((const int32_t *)col->buffers[1])[i];
            }
        }
        rows += batch.length;
        batches++;
        batch.release(&batch);
    }
    printf("%" PRId64 " rows in %" PRId64 " record batches\n", rows, batches);
    for (int64_t c = 0; c < ncols; c++)
        printf("%s\t%s\t%" PRId64 " values\t%" PRId64 " NULLs\t%" PRId64 "\n",
               schema.children[c]->name, schema.children[c]->format, values[c], nulls[c], sums[c]);
    schema.release(&schema);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: arrow_columns DSN SQL\n");
        return 2;
    }
    pgspout_conn *conn = NULL;
    if (pgspout_connect(argv[1], &conn) != PGSPOUT_OK) {
        fprintf(stderr, "connect: %s\n", conn ? pgspout_conn_error(conn) : "out of memory");
        pgspout_conn_close(conn);
        return 1;
    }
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(conn, argv[2], 0, NULL, NULL, &s);
    if (rc != PGSPOUT_OK) {
        fprintf(stderr, "%s: %s\n", pgspout_code_name(rc),
                s ? pgspout_stream_error(s) : pgspout_conn_error(conn));
        pgspout_stream_close(s);
        pgspout_conn_close(conn);
        return 1;
    }
    struct ArrowArrayStream arrow;
    int status = 1;
    if (pgspout_stream_arrow(s, &arrow) == PGSPOUT_OK) {
        status = summarize(&arrow);
        arrow.release(&arrow); /* the consumer's to release; before or after the stream */
    }
    pgspout_stream_close(s);
    pgspout_conn_close(conn);
    return status;
}
