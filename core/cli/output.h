/* output.h - row formats of the pgspout command: NDJSON, CSV, TSV, JSON. */
#ifndef PGSPOUT_CLI_OUTPUT_H
#define PGSPOUT_CLI_OUTPUT_H

#include <pgspout.h>
#include <stdio.h>

enum { FMT_NDJSON, FMT_CSV, FMT_TSV, FMT_JSON };
/* out_chunk's failures */
enum { OUT_EWRITE = -1, OUT_ELIB = -2 };

/* Bytes handed to the output FILE so far by this thread (what --progress
 * calls "written"). Each thread writes one output (--partitions: one per
 * partition), so the counters and the JSON state are per thread. */
extern _Thread_local unsigned long long out_bytes_written;

/* Parse "ndjson" | "csv" | "tsv" | "json"; -1 if unknown. */
int out_format(const char *name);
/* What comes before the rows: the column-name line for CSV/TSV when header
 * is set, "[" for JSON (always: the array is the format). 0, or OUT_EWRITE
 * on a write error (errno says why). */
int out_header(FILE *f, int fmt, int header, const pgspout_stream *s);
/* Every row of chunk c in format fmt. 0, OUT_EWRITE on a write error (errno
 * says why) or OUT_ELIB when the library could not render the rows (*rc
 * says why: ENOMEM, or ESTATE for a stream opened with option binary). */
int out_chunk(FILE *f, int fmt, pgspout_stream *s, const pgspout_chunk *c, int *rc);
/* What comes after the last row of a stream that ended well: "]\n" for
 * JSON, nothing for the others. 0 or OUT_EWRITE. */
int out_footer(FILE *f, int fmt);
/* The bytes out_footer writes for fmt. */
size_t out_footer_size(int fmt);
/* b bytes as the progress line writes them: "512 B", "1.5 kB", "2.0 MB"... */
void out_human_bytes(char *dst, size_t n, double b);

#endif
