/* json.h - JSON rendering of rows (RFC 8259 output), as PostgreSQL's
 * row_to_json renders them. */
#ifndef PGSPOUT_JSON_H
#define PGSPOUT_JSON_H

#include "buf.h"
#include <stddef.h>

/* How a column's text value becomes JSON, by type OID. The scalar kinds
 * (below 8) are also the kinds of type-tree nodes (pgs_jtype). */
enum {
    PGS_JSON_STRING = 0,       /* escaped string */
    PGS_JSON_NUMBER,           /* int2/4/8, numeric, float4/8: bare number */
    PGS_JSON_BOOL,             /* 't'/'f' -> true/false */
    PGS_JSON_RAW,              /* jsonb: inserted as-is (its output has no raw newlines) */
    PGS_JSON_RAW_LINES,        /* json: as-is but for raw CR/LF, which become spaces so
                                  one value stays on one NDJSON line */
    PGS_JSON_TIMESTAMP,        /* timestamp(tz): a string in ISO 8601, as to_json
                                  writes it ("2026-12-02T06:16:21.643+00:00") */
    PGS_JSON_ARRAY = 0x10,     /* flag: an array of the kind in the low bits,
                                  rendered as nested JSON arrays */
    PGS_JSON_TREE = 0x20,      /* a column rendered by its type tree (pgs_jtype):
                                  composites, domains, arrays of other types... */
    PGS_JSON_UNRESOLVED = 0x40 /* a column whose type needs the catalog, which
                                  this stream did not look up (option json) */
};

/* Kinds of type-tree nodes beyond the scalar kinds above. */
enum {
    PGS_JT_ARRAY = 8, /* array_out text: nested JSON arrays of elem */
    PGS_JT_VECTOR,    /* int2vector, oidvector: elements separated by spaces */
    PGS_JT_COMPOSITE, /* record_out text of a named composite: an object */
    PGS_JT_RECORD,    /* an anonymous record: its text, as a string (the
                         protocol carries neither its field names nor, in
                         text, their types) */
    PGS_JT_ANYARRAY,  /* anyarray (pg_stats...): its text, as a string (the
                         element type is in the value only) */
    PGS_JT_CAST       /* a type with a cast to json, which row_to_json calls
                         (hstore...): its text, as a string */
};

/* Nesting the renderer follows; deeper values are written as their text. */
#define PGS_JT_DEPTH 32

typedef struct pgs_jtype pgs_jtype;

typedef struct pgs_jfield {
    char *key; /* "\"name\":", escaped */
    size_t key_len;
    const pgs_jtype *type;
} pgs_jfield;

/* How values of one type render: a scalar kind, or a structure over the
 * types of its elements or fields. Built once per stream (jsontypes.c). */
struct pgs_jtype {
    unsigned int oid;
    int kind;              /* PGS_JSON_STRING..TIMESTAMP or PGS_JT_* */
    char delim;            /* PGS_JT_ARRAY: the elements' delimiter (box: ';') */
    const pgs_jtype *elem; /* PGS_JT_ARRAY, PGS_JT_VECTOR */
    int nfields;           /* PGS_JT_COMPOSITE */
    pgs_jfield *fields;
};

/* Per-depth unescape buffers for pgs_json_tree (reused across values). */
typedef struct pgs_jscratch {
    pgs_buf lvl[PGS_JT_DEPTH + 1];
    int mismatch; /* a value did not have its type's shape: written as text */
} pgs_jscratch;

void pgs_jscratch_free(pgs_jscratch *sc);

/* The kind of a built-in type known without the catalog: a scalar kind, or
 * one with PGS_JSON_ARRAY (arrays of them, ',' delimited), PGS_JSON_TREE
 * (built-in types a type tree renders: arrays of ranges, of box...,
 * int2vector, record), or PGS_JSON_UNRESOLVED (every other OID). */
int pgs_json_kind(unsigned int type_oid);
/* Append s[0..n) as a quoted JSON string; invalid UTF-8 bytes become U+FFFD. */
int pgs_json_string(pgs_buf *b, const char *s, size_t n);
/* Append one value of the given kind; isnull gives null. Numbers that are not
 * finite ("NaN", "Infinity", "-Infinity") are rendered as strings. */
int pgs_json_value(pgs_buf *b, int kind, const char *v, size_t n, int isnull);
/* Append one value of type t (its text v[0..n)); a text that does not have
 * the type's shape is written as a string of it (and sc->mismatch set). 0,
 * or -1 when memory ran out. */
int pgs_json_tree(pgs_buf *b, const pgs_jtype *t, const char *v, size_t n, pgs_jscratch *sc);

/* ---- jsontypes.c: type trees from the built-in table and the catalog */

/* A built-in type's entry: kind (scalar, PGS_JT_ARRAY, _VECTOR, _RECORD,
 * _ANYARRAY), its element and the elements' delimiter. 0 if oid is not a
 * built-in type pgspout knows without the catalog (composites included). */
typedef struct pgs_builtin {
    unsigned short oid, elem;
    unsigned char kind;
    char delim;
} pgs_builtin;
const pgs_builtin *pgs_json_builtin(unsigned int oid);

/* What the catalog says of a type; cached on the connection. Only what no
 * DDL can change under the same OID is kept there: a composite's fields
 * (ALTER TABLE/TYPE) are looked up again by each stream that renders one. */
typedef struct pgs_typeinfo {
    unsigned int oid, elem, base; /* elem: of a true array; base: of a domain */
    char typtype;                 /* b c d e m p r */
    char delim;                   /* arrays: the elements' delimiter */
    unsigned char cast;           /* a function cast to json (oid >= 16384) */
} pgs_typeinfo;

typedef struct pgs_typecache {
    pgs_typeinfo *t; /* sorted by oid */
    int n, cap;
} pgs_typecache;

void pgs_typecache_free(pgs_typecache *c);

typedef struct pgs_jattr {
    unsigned int rel_type; /* the composite type */
    unsigned int type;
    char *name;
} pgs_jattr;

/* One stream's type trees and the catalog rows its lookup returned. */
typedef struct pgs_jtypes {
    unsigned int *need; /* OIDs to look up */
    int nneed, capneed;
    pgs_jattr *attrs; /* composites' fields, by type then attnum */
    int nattrs, capattrs;
    int catalog;   /* the stream may ask the catalog (option json) */
    int looked_up; /* ... and did: attrs holds the composites' fields */
    pgs_jtype **nodes;
    int nnodes, capnodes;
    unsigned int fallback_oid; /* a type written as its text (PGS_JT_RECORD...) */
    int fallback_kind;
} pgs_jtypes;

/* Collect in jt->need the OIDs among oids[0..n) (and the types they are
 * made of) that the catalog must describe: types the built-in table and
 * the cache do not know, and composites (whose fields are not cached).
 * Returns jt->nneed, or -1 when memory ran out. */
int pgs_jtypes_need(pgs_jtypes *jt, const pgs_typecache *cache, const unsigned int *oids, int n);
/* The catalog query for jt->need (malloc'd; NULL: out of memory).
 * server_version as PQserverVersion: true arrays are told apart as the
 * server does. */
char *pgs_jtypes_sql(const pgs_jtypes *jt, int server_version);
/* Take one row of that query's result: its 8 values, NULL for SQL NULL.
 * A type goes into cache, a composite's field into jt. 0, or -1 when memory
 * ran out or the row is not the query's. */
#define PGS_JTYPES_NCOLS 8
int pgs_jtypes_row(pgs_jtypes *jt, pgs_typecache *cache, const char *const *v);
/* The tree of a column of type oid (*out), and the column's kind: a fast
 * kind (scalar, or with PGS_JSON_ARRAY; *out NULL), PGS_JSON_TREE, or
 * PGS_JSON_UNRESOLVED (a type it cannot know without the catalog, or that
 * the lookup did not return). -1 when memory ran out. */
int pgs_jtypes_column(pgs_jtypes *jt, const pgs_typecache *cache, unsigned int oid,
                      const pgs_jtype **out);
void pgs_jtypes_free(pgs_jtypes *jt);
/* 1 when values of type t, or of a type it is made of, are rendered as
 * row_to_json does only by the server (PGS_JT_RECORD, _ANYARRAY, _CAST). */
int pgs_jtype_server_only(const pgs_jtype *t);

/* ---- jsonwrap.c: the statement as a subquery, for such columns */

/* The length of sql without its trailing ';', comments and white space
 * when it is a query that can be a subquery in FROM (SELECT, VALUES,
 * TABLE, one in parentheses, WITH without INSERT, UPDATE, DELETE or MERGE
 * in it); 0 when it is not, or may not be. standard_strings: the session's
 * standard_conforming_strings. */
size_t pgs_json_query_len(const char *sql, int standard_strings);
/* "SELECT <each column, or its to_json where server[c]> AS <names[c]> FROM
 * (sql[0..len)) AS pgspout_q(c1, ...)": the same rows, in the same order,
 * under the same names. malloc'd; NULL when memory ran out. */
char *pgs_json_wrap(const char *sql, size_t len, int ncols, const char *const *names,
                    const unsigned char *server);

#endif
