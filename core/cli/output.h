/* output.h - row formats of the pgspout command: NDJSON, CSV, TSV. */
#ifndef PGSPOUT_CLI_OUTPUT_H
#define PGSPOUT_CLI_OUTPUT_H

#include <pgspout.h>
#include <stdio.h>

enum { FMT_NDJSON, FMT_CSV, FMT_TSV };
/* out_chunk's failures */
enum { OUT_EWRITE = -1, OUT_ELIB = -2 };

/* Parse "ndjson" | "csv" | "tsv"; -1 if unknown. */
int out_format(const char *name);
/* The column-name line for CSV/TSV. 0, or OUT_EWRITE on a write error
 * (errno says why). */
int out_header(FILE *f, int fmt, const pgspout_stream *s);
/* Every row of chunk c in format fmt. 0, OUT_EWRITE on a write error (errno
 * says why) or OUT_ELIB when the library could not render the rows (*rc
 * says why: ENOMEM, or ESTATE for a stream opened with option binary). */
int out_chunk(FILE *f, int fmt, pgspout_stream *s, const pgspout_chunk *c, int *rc);

#endif
