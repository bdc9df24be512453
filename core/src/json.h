/* json.h - JSON rendering of rows (RFC 8259 output). */
#ifndef PGSPOUT_JSON_H
#define PGSPOUT_JSON_H

#include "buf.h"
#include <stddef.h>

/* How a column's text value becomes JSON, by type OID. */
enum {
    PGS_JSON_STRING = 0,  /* escaped string */
    PGS_JSON_NUMBER,      /* int2/4/8, oid, numeric, float4/8: bare number */
    PGS_JSON_BOOL,        /* 't'/'f' -> true/false */
    PGS_JSON_RAW,         /* jsonb: inserted as-is (its output has no raw newlines) */
    PGS_JSON_RAW_LINES,   /* json: as-is but for raw CR/LF, which become spaces so
                             one value stays on one NDJSON line */
    PGS_JSON_TIMESTAMP,   /* timestamp(tz): a string in ISO 8601, as to_json
                             writes it ("2026-12-02T06:16:21.643+00:00") */
    PGS_JSON_ARRAY = 0x10 /* flag: an array of the kind in the low bits,
                             rendered as nested JSON arrays */
};

int pgs_json_kind(unsigned int type_oid);
/* Append s[0..n) as a quoted JSON string; invalid UTF-8 bytes become U+FFFD. */
int pgs_json_string(pgs_buf *b, const char *s, size_t n);
/* Append one value of the given kind; isnull gives null. Numbers that are not
 * finite ("NaN", "Infinity", "-Infinity") are rendered as strings. */
int pgs_json_value(pgs_buf *b, int kind, const char *v, size_t n, int isnull);

#endif
