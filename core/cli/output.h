/* output.h - row formats of the pgspout command: NDJSON, CSV, TSV. */
#ifndef PGSPOUT_CLI_OUTPUT_H
#define PGSPOUT_CLI_OUTPUT_H

#include <pgspout.h>
#include <stdio.h>

enum { FMT_NDJSON, FMT_CSV, FMT_TSV };

/* Parse "ndjson" | "csv" | "tsv"; -1 if unknown. */
int out_format(const char *name);
/* The column-name line for CSV/TSV. 0, or -1 on a write error. */
int out_header(FILE *f, int fmt, const pgspout_stream *s);
/* Every row of chunk c in format fmt. 0, or -1 on a write error. */
int out_chunk(FILE *f, int fmt, pgspout_stream *s, const pgspout_chunk *c);

#endif
