/* jsontypes.c - how each column's values render as JSON: type trees built
 * from a table of the built-in types and, for the rest (composites,
 * domains, enums, arrays of them, types of extensions), from the catalog.
 *
 * row_to_json renders a value by its type's JSON category
 * (json_categorize_type in the server): a domain as its base type; a true
 * array (an element type and array_out's text; int2vector and oidvector
 * too) as a JSON array; a composite as an object of its fields; int2/4/8,
 * float4/8 and numeric as numbers, bool, json, jsonb, date, timestamp(tz)
 * each their own way; a type of an extension with a function cast to json
 * through that cast; everything else as a string of its text (enums,
 * ranges, multiranges, oid, ...). The text format carries none of that, so
 * a stream opened with option json describes its statement before running
 * it, and asks the catalog (one query, only for types neither the table
 * below nor the connection's cache knows, and for composites) before the
 * statement runs: the connection cannot answer another query while the
 * stream's runs.
 */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* Every built-in type (OID < 10000, fixed in PostgreSQL's pg_type.dat)
 * except the catalogs' row types and arrays of them, which the catalog
 * describes. Generated from PostgreSQL 15's pg_type:
 *
 *   SELECT t.oid, t.typname, t.typtype,
 *          CASE WHEN t.typelem <> 0 AND t.typlen = -1 THEN t.typelem ELSE 0 END,
 *          e.typtype, e.typdelim
 *     FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typlen = -1
 *    WHERE t.oid < 10000 ORDER BY t.oid
 *
 * (kinds by json_categorize_type; composites and arrays of composites
 * left out). A type added by a later release is not here: the catalog
 * describes it. */
static const pgs_builtin builtins[] = {
    {16, 0, PGS_JSON_BOOL, 0},        /* bool */
    {17, 0, PGS_JSON_STRING, 0},      /* bytea */
    {18, 0, PGS_JSON_STRING, 0},      /* char */
    {19, 0, PGS_JSON_STRING, 0},      /* name */
    {20, 0, PGS_JSON_NUMBER, 0},      /* int8 */
    {21, 0, PGS_JSON_NUMBER, 0},      /* int2 */
    {22, 21, PGS_JT_VECTOR, ' '},     /* int2vector */
    {23, 0, PGS_JSON_NUMBER, 0},      /* int4 */
    {24, 0, PGS_JSON_STRING, 0},      /* regproc */
    {25, 0, PGS_JSON_STRING, 0},      /* text */
    {26, 0, PGS_JSON_STRING, 0},      /* oid */
    {27, 0, PGS_JSON_STRING, 0},      /* tid */
    {28, 0, PGS_JSON_STRING, 0},      /* xid */
    {29, 0, PGS_JSON_STRING, 0},      /* cid */
    {30, 26, PGS_JT_VECTOR, ' '},     /* oidvector */
    {32, 0, PGS_JSON_STRING, 0},      /* pg_ddl_command */
    {114, 0, PGS_JSON_RAW_LINES, 0},  /* json */
    {142, 0, PGS_JSON_STRING, 0},     /* xml */
    {143, 142, PGS_JT_ARRAY, ','},    /* _xml */
    {194, 0, PGS_JSON_STRING, 0},     /* pg_node_tree */
    {199, 114, PGS_JT_ARRAY, ','},    /* _json */
    {269, 0, PGS_JSON_STRING, 0},     /* table_am_handler */
    {271, 5069, PGS_JT_ARRAY, ','},   /* _xid8 */
    {325, 0, PGS_JSON_STRING, 0},     /* index_am_handler */
    {600, 0, PGS_JSON_STRING, 0},     /* point */
    {601, 0, PGS_JSON_STRING, 0},     /* lseg */
    {602, 0, PGS_JSON_STRING, 0},     /* path */
    {603, 0, PGS_JSON_STRING, 0},     /* box */
    {604, 0, PGS_JSON_STRING, 0},     /* polygon */
    {628, 0, PGS_JSON_STRING, 0},     /* line */
    {629, 628, PGS_JT_ARRAY, ','},    /* _line */
    {650, 0, PGS_JSON_STRING, 0},     /* cidr */
    {651, 650, PGS_JT_ARRAY, ','},    /* _cidr */
    {700, 0, PGS_JSON_NUMBER, 0},     /* float4 */
    {701, 0, PGS_JSON_NUMBER, 0},     /* float8 */
    {705, 0, PGS_JSON_STRING, 0},     /* unknown */
    {718, 0, PGS_JSON_STRING, 0},     /* circle */
    {719, 718, PGS_JT_ARRAY, ','},    /* _circle */
    {774, 0, PGS_JSON_STRING, 0},     /* macaddr8 */
    {775, 774, PGS_JT_ARRAY, ','},    /* _macaddr8 */
    {790, 0, PGS_JSON_STRING, 0},     /* money */
    {791, 790, PGS_JT_ARRAY, ','},    /* _money */
    {829, 0, PGS_JSON_STRING, 0},     /* macaddr */
    {869, 0, PGS_JSON_STRING, 0},     /* inet */
    {1000, 16, PGS_JT_ARRAY, ','},    /* _bool */
    {1001, 17, PGS_JT_ARRAY, ','},    /* _bytea */
    {1002, 18, PGS_JT_ARRAY, ','},    /* _char */
    {1003, 19, PGS_JT_ARRAY, ','},    /* _name */
    {1005, 21, PGS_JT_ARRAY, ','},    /* _int2 */
    {1006, 22, PGS_JT_ARRAY, ','},    /* _int2vector */
    {1007, 23, PGS_JT_ARRAY, ','},    /* _int4 */
    {1008, 24, PGS_JT_ARRAY, ','},    /* _regproc */
    {1009, 25, PGS_JT_ARRAY, ','},    /* _text */
    {1010, 27, PGS_JT_ARRAY, ','},    /* _tid */
    {1011, 28, PGS_JT_ARRAY, ','},    /* _xid */
    {1012, 29, PGS_JT_ARRAY, ','},    /* _cid */
    {1013, 30, PGS_JT_ARRAY, ','},    /* _oidvector */
    {1014, 1042, PGS_JT_ARRAY, ','},  /* _bpchar */
    {1015, 1043, PGS_JT_ARRAY, ','},  /* _varchar */
    {1016, 20, PGS_JT_ARRAY, ','},    /* _int8 */
    {1017, 600, PGS_JT_ARRAY, ','},   /* _point */
    {1018, 601, PGS_JT_ARRAY, ','},   /* _lseg */
    {1019, 602, PGS_JT_ARRAY, ','},   /* _path */
    {1020, 603, PGS_JT_ARRAY, ';'},   /* _box */
    {1021, 700, PGS_JT_ARRAY, ','},   /* _float4 */
    {1022, 701, PGS_JT_ARRAY, ','},   /* _float8 */
    {1027, 604, PGS_JT_ARRAY, ','},   /* _polygon */
    {1028, 26, PGS_JT_ARRAY, ','},    /* _oid */
    {1033, 0, PGS_JSON_STRING, 0},    /* aclitem */
    {1034, 1033, PGS_JT_ARRAY, ','},  /* _aclitem */
    {1040, 829, PGS_JT_ARRAY, ','},   /* _macaddr */
    {1041, 869, PGS_JT_ARRAY, ','},   /* _inet */
    {1042, 0, PGS_JSON_STRING, 0},    /* bpchar */
    {1043, 0, PGS_JSON_STRING, 0},    /* varchar */
    {1082, 0, PGS_JSON_STRING, 0},    /* date */
    {1083, 0, PGS_JSON_STRING, 0},    /* time */
    {1114, 0, PGS_JSON_TIMESTAMP, 0}, /* timestamp */
    {1115, 1114, PGS_JT_ARRAY, ','},  /* _timestamp */
    {1182, 1082, PGS_JT_ARRAY, ','},  /* _date */
    {1183, 1083, PGS_JT_ARRAY, ','},  /* _time */
    {1184, 0, PGS_JSON_TIMESTAMP, 0}, /* timestamptz */
    {1185, 1184, PGS_JT_ARRAY, ','},  /* _timestamptz */
    {1186, 0, PGS_JSON_STRING, 0},    /* interval */
    {1187, 1186, PGS_JT_ARRAY, ','},  /* _interval */
    {1231, 1700, PGS_JT_ARRAY, ','},  /* _numeric */
    {1263, 2275, PGS_JT_ARRAY, ','},  /* _cstring */
    {1266, 0, PGS_JSON_STRING, 0},    /* timetz */
    {1270, 1266, PGS_JT_ARRAY, ','},  /* _timetz */
    {1560, 0, PGS_JSON_STRING, 0},    /* bit */
    {1561, 1560, PGS_JT_ARRAY, ','},  /* _bit */
    {1562, 0, PGS_JSON_STRING, 0},    /* varbit */
    {1563, 1562, PGS_JT_ARRAY, ','},  /* _varbit */
    {1700, 0, PGS_JSON_NUMBER, 0},    /* numeric */
    {1790, 0, PGS_JSON_STRING, 0},    /* refcursor */
    {2201, 1790, PGS_JT_ARRAY, ','},  /* _refcursor */
    {2202, 0, PGS_JSON_STRING, 0},    /* regprocedure */
    {2203, 0, PGS_JSON_STRING, 0},    /* regoper */
    {2204, 0, PGS_JSON_STRING, 0},    /* regoperator */
    {2205, 0, PGS_JSON_STRING, 0},    /* regclass */
    {2206, 0, PGS_JSON_STRING, 0},    /* regtype */
    {2207, 2202, PGS_JT_ARRAY, ','},  /* _regprocedure */
    {2208, 2203, PGS_JT_ARRAY, ','},  /* _regoper */
    {2209, 2204, PGS_JT_ARRAY, ','},  /* _regoperator */
    {2210, 2205, PGS_JT_ARRAY, ','},  /* _regclass */
    {2211, 2206, PGS_JT_ARRAY, ','},  /* _regtype */
    {2249, 0, PGS_JT_RECORD, 0},      /* record */
    {2275, 0, PGS_JSON_STRING, 0},    /* cstring */
    {2276, 0, PGS_JSON_STRING, 0},    /* any */
    {2277, 0, PGS_JT_ANYARRAY, 0},    /* anyarray */
    {2278, 0, PGS_JSON_STRING, 0},    /* void */
    {2279, 0, PGS_JSON_STRING, 0},    /* trigger */
    {2280, 0, PGS_JSON_STRING, 0},    /* language_handler */
    {2281, 0, PGS_JSON_STRING, 0},    /* internal */
    {2283, 0, PGS_JSON_STRING, 0},    /* anyelement */
    {2287, 2249, PGS_JT_ARRAY, ','},  /* _record */
    {2776, 0, PGS_JSON_STRING, 0},    /* anynonarray */
    {2949, 2970, PGS_JT_ARRAY, ','},  /* _txid_snapshot */
    {2950, 0, PGS_JSON_STRING, 0},    /* uuid */
    {2951, 2950, PGS_JT_ARRAY, ','},  /* _uuid */
    {2970, 0, PGS_JSON_STRING, 0},    /* txid_snapshot */
    {3115, 0, PGS_JSON_STRING, 0},    /* fdw_handler */
    {3220, 0, PGS_JSON_STRING, 0},    /* pg_lsn */
    {3221, 3220, PGS_JT_ARRAY, ','},  /* _pg_lsn */
    {3310, 0, PGS_JSON_STRING, 0},    /* tsm_handler */
    {3361, 0, PGS_JSON_STRING, 0},    /* pg_ndistinct */
    {3402, 0, PGS_JSON_STRING, 0},    /* pg_dependencies */
    {3500, 0, PGS_JSON_STRING, 0},    /* anyenum */
    {3614, 0, PGS_JSON_STRING, 0},    /* tsvector */
    {3615, 0, PGS_JSON_STRING, 0},    /* tsquery */
    {3642, 0, PGS_JSON_STRING, 0},    /* gtsvector */
    {3643, 3614, PGS_JT_ARRAY, ','},  /* _tsvector */
    {3644, 3642, PGS_JT_ARRAY, ','},  /* _gtsvector */
    {3645, 3615, PGS_JT_ARRAY, ','},  /* _tsquery */
    {3734, 0, PGS_JSON_STRING, 0},    /* regconfig */
    {3735, 3734, PGS_JT_ARRAY, ','},  /* _regconfig */
    {3769, 0, PGS_JSON_STRING, 0},    /* regdictionary */
    {3770, 3769, PGS_JT_ARRAY, ','},  /* _regdictionary */
    {3802, 0, PGS_JSON_RAW, 0},       /* jsonb */
    {3807, 3802, PGS_JT_ARRAY, ','},  /* _jsonb */
    {3831, 0, PGS_JSON_STRING, 0},    /* anyrange */
    {3838, 0, PGS_JSON_STRING, 0},    /* event_trigger */
    {3904, 0, PGS_JSON_STRING, 0},    /* int4range */
    {3905, 3904, PGS_JT_ARRAY, ','},  /* _int4range */
    {3906, 0, PGS_JSON_STRING, 0},    /* numrange */
    {3907, 3906, PGS_JT_ARRAY, ','},  /* _numrange */
    {3908, 0, PGS_JSON_STRING, 0},    /* tsrange */
    {3909, 3908, PGS_JT_ARRAY, ','},  /* _tsrange */
    {3910, 0, PGS_JSON_STRING, 0},    /* tstzrange */
    {3911, 3910, PGS_JT_ARRAY, ','},  /* _tstzrange */
    {3912, 0, PGS_JSON_STRING, 0},    /* daterange */
    {3913, 3912, PGS_JT_ARRAY, ','},  /* _daterange */
    {3926, 0, PGS_JSON_STRING, 0},    /* int8range */
    {3927, 3926, PGS_JT_ARRAY, ','},  /* _int8range */
    {4072, 0, PGS_JSON_STRING, 0},    /* jsonpath */
    {4073, 4072, PGS_JT_ARRAY, ','},  /* _jsonpath */
    {4089, 0, PGS_JSON_STRING, 0},    /* regnamespace */
    {4090, 4089, PGS_JT_ARRAY, ','},  /* _regnamespace */
    {4096, 0, PGS_JSON_STRING, 0},    /* regrole */
    {4097, 4096, PGS_JT_ARRAY, ','},  /* _regrole */
    {4191, 0, PGS_JSON_STRING, 0},    /* regcollation */
    {4192, 4191, PGS_JT_ARRAY, ','},  /* _regcollation */
    {4451, 0, PGS_JSON_STRING, 0},    /* int4multirange */
    {4532, 0, PGS_JSON_STRING, 0},    /* nummultirange */
    {4533, 0, PGS_JSON_STRING, 0},    /* tsmultirange */
    {4534, 0, PGS_JSON_STRING, 0},    /* tstzmultirange */
    {4535, 0, PGS_JSON_STRING, 0},    /* datemultirange */
    {4536, 0, PGS_JSON_STRING, 0},    /* int8multirange */
    {4537, 0, PGS_JSON_STRING, 0},    /* anymultirange */
    {4538, 0, PGS_JSON_STRING, 0},    /* anycompatiblemultirange */
    {4600, 0, PGS_JSON_STRING, 0},    /* pg_brin_bloom_summary */
    {4601, 0, PGS_JSON_STRING, 0},    /* pg_brin_minmax_multi_summary */
    {5017, 0, PGS_JSON_STRING, 0},    /* pg_mcv_list */
    {5038, 0, PGS_JSON_STRING, 0},    /* pg_snapshot */
    {5039, 5038, PGS_JT_ARRAY, ','},  /* _pg_snapshot */
    {5069, 0, PGS_JSON_STRING, 0},    /* xid8 */
    {5077, 0, PGS_JSON_STRING, 0},    /* anycompatible */
    {5078, 0, PGS_JT_ANYARRAY, 0},    /* anycompatiblearray */
    {5079, 0, PGS_JSON_STRING, 0},    /* anycompatiblenonarray */
    {5080, 0, PGS_JSON_STRING, 0},    /* anycompatiblerange */
    {6150, 4451, PGS_JT_ARRAY, ','},  /* _int4multirange */
    {6151, 4532, PGS_JT_ARRAY, ','},  /* _nummultirange */
    {6152, 4533, PGS_JT_ARRAY, ','},  /* _tsmultirange */
    {6153, 4534, PGS_JT_ARRAY, ','},  /* _tstzmultirange */
    {6155, 4535, PGS_JT_ARRAY, ','},  /* _datemultirange */
    {6157, 4536, PGS_JT_ARRAY, ','},  /* _int8multirange */
};

const pgs_builtin *pgs_json_builtin(unsigned int oid)
{
    size_t lo = 0, hi = sizeof builtins / sizeof builtins[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (builtins[mid].oid == oid)
            return &builtins[mid];
        if (builtins[mid].oid < oid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------- the connection's cache */

/* Past this many types the cache starts over (a connection that met that
 * many types of its own). */
#define CACHE_MAX 4096

static const pgs_typeinfo *cache_find(const pgs_typecache *c, unsigned int oid)
{
    int lo = 0, hi = c ? c->n : 0;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (c->t[mid].oid == oid)
            return &c->t[mid];
        if (c->t[mid].oid < oid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int cache_put(pgs_typecache *c, const pgs_typeinfo *ti)
{
    int lo = 0, hi = c->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (c->t[mid].oid < ti->oid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < c->n && c->t[lo].oid == ti->oid) {
        c->t[lo] = *ti;
        return 0;
    }
    if (c->n >= CACHE_MAX)
        c->n = lo = 0;
    if (c->n == c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        pgs_typeinfo *t = realloc(c->t, (size_t)cap * sizeof *t);
        if (t == NULL)
            return -1;
        c->t = t;
        c->cap = cap;
    }
    memmove(c->t + lo + 1, c->t + lo, (size_t)(c->n - lo) * sizeof *c->t);
    c->t[lo] = *ti;
    c->n++;
    return 0;
}

void pgs_typecache_free(pgs_typecache *c)
{
    if (c == NULL)
        return;
    free(c->t);
    free(c);
}

/* ------------------------------------------------------ what to look up */

/* Deeper than this a type is written as its text (PostgreSQL refuses
 * composites that contain themselves; this bounds a confused catalog). */
#define BUILD_DEPTH (PGS_JT_DEPTH - 1)

static int need_add(pgs_jtypes *jt, unsigned int oid)
{
    for (int i = 0; i < jt->nneed; i++)
        if (jt->need[i] == oid)
            return 0;
    if (jt->nneed == jt->capneed) {
        int cap = jt->capneed ? jt->capneed * 2 : 8;
        unsigned int *n = realloc(jt->need, (size_t)cap * sizeof *n);
        if (n == NULL)
            return -1;
        jt->need = n;
        jt->capneed = cap;
    }
    jt->need[jt->nneed++] = oid;
    return 0;
}

static int need_walk(pgs_jtypes *jt, const pgs_typecache *cache, unsigned int oid, int depth)
{
    if (depth > BUILD_DEPTH)
        return 0;
    const pgs_builtin *b = pgs_json_builtin(oid);
    if (b)
        return b->elem ? need_walk(jt, cache, b->elem, depth + 1) : 0;
    const pgs_typeinfo *ti = cache_find(cache, oid);
    if (ti == NULL || ti->typtype == 'c')
        return need_add(jt, oid); /* unknown, or a composite: its fields */
    if (ti->typtype == 'd')
        return need_walk(jt, cache, ti->base, depth + 1);
    return ti->elem ? need_walk(jt, cache, ti->elem, depth + 1) : 0;
}

int pgs_jtypes_need(pgs_jtypes *jt, const pgs_typecache *cache, const unsigned int *oids, int n)
{
    for (int i = 0; i < n; i++)
        if (need_walk(jt, cache, oids[i], 0) != 0)
            return -1;
    return jt->nneed;
}

/* The types in need and every type they are made of (elements, domains'
 * bases, fields), then the composites' fields; one row per type (attnum
 * NULL) or field. True arrays as the server tells them: typsubscript
 * array_subscript_handler since PostgreSQL 14, typlen -1 before. Every
 * lookup is a LATERAL subquery with OFFSET 0, so that each is an index scan
 * per type: joined, the planner hashes all of pg_type and pg_attribute (a
 * millisecond and more per stream). */
char *pgs_jtypes_sql(const pgs_jtypes *jt, int server_version)
{
    const char *array =
        server_version >= 140000
            ? "typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc"
            : "typlen = -1";
    char type[400];
    snprintf(type, sizeof type,
             "SELECT oid, typtype, CASE WHEN typelem <> 0 AND %s THEN typelem ELSE 0 END, "
             "typbasetype, typrelid FROM pg_catalog.pg_type WHERE oid = ",
             array);
    pgs_buf b = PGS_BUF_INIT;
    pgs_buf_puts(&b, "WITH RECURSIVE t(oid, typtype, elem, base, relid) AS (SELECT y.* FROM "
                     "pg_catalog.unnest('{");
    for (int i = 0; i < jt->nneed; i++)
        pgs_buf_printf(&b, "%s%u", i ? "," : "", jt->need[i]);
    pgs_buf_printf(
        &b,
        "}'::pg_catalog.oid[]) u(oid), LATERAL (%su.oid OFFSET 0) y "
        "UNION SELECT y.* FROM t, LATERAL (SELECT t.elem WHERE t.elem <> 0 "
        "UNION ALL SELECT t.base WHERE t.typtype = 'd' "
        "UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = t.relid "
        "AND t.relid <> 0 AND a.attnum > 0 AND NOT a.attisdropped) s(x), "
        "LATERAL (%ss.x OFFSET 0) y) "
        "SELECT t.oid, t.typtype, t.elem, t.base, "
        "(SELECT e.typdelim FROM pg_catalog.pg_type e WHERE e.oid = t.elem), "
        "t.oid >= 16384 AND EXISTS (SELECT FROM pg_catalog.pg_cast c WHERE c.castsource = t.oid "
        "AND c.casttarget = 114 AND c.castmethod = 'f'), NULL::pg_catalog.int2, "
        "NULL::pg_catalog.name FROM t "
        "UNION ALL SELECT t.oid, NULL, a.atttypid, NULL, NULL, NULL, a.attnum, a.attname FROM t, "
        "LATERAL (SELECT atttypid, attnum, attname FROM pg_catalog.pg_attribute WHERE attrelid = "
        "t.relid AND t.relid <> 0 AND attnum > 0 AND NOT attisdropped OFFSET 0) a "
        "ORDER BY 1, 7 NULLS FIRST",
        type, type);
    return pgs_buf_steal(&b);
}

static int parse_oid(const char *s, unsigned int *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || v > 0xFFFFFFFFul)
        return -1;
    *out = (unsigned int)v;
    return 0;
}

int pgs_jtypes_row(pgs_jtypes *jt, pgs_typecache *cache, const char *const *v)
{
    unsigned int oid, ref;
    if (v[0] == NULL || v[2] == NULL || parse_oid(v[0], &oid) != 0 || parse_oid(v[2], &ref) != 0)
        return -1;
    jt->looked_up = 1;
    if (v[6] == NULL) { /* a type */
        pgs_typeinfo ti = {oid,
                           ref,
                           0,
                           v[1] ? v[1][0] : 'b',
                           v[4] && v[4][0] ? v[4][0] : ',',
                           v[5] && v[5][0] == 't'};
        if (v[3] == NULL || parse_oid(v[3], &ti.base) != 0)
            return -1;
        return cache_put(cache, &ti);
    }
    if (v[7] == NULL)
        return -1;
    if (jt->nattrs == jt->capattrs) { /* a field of composite oid */
        int cap = jt->capattrs ? jt->capattrs * 2 : 16;
        pgs_jattr *a = realloc(jt->attrs, (size_t)cap * sizeof *a);
        if (a == NULL)
            return -1;
        jt->attrs = a;
        jt->capattrs = cap;
    }
    char *name = strdup(v[7]);
    if (name == NULL)
        return -1;
    jt->attrs[jt->nattrs++] = (pgs_jattr){oid, ref, name};
    return 0;
}

/* ---------------------------------------------------------- type trees */

static pgs_jtype *node_new(pgs_jtypes *jt, unsigned int oid, int kind)
{
    if (jt->nnodes == jt->capnodes) {
        int cap = jt->capnodes ? jt->capnodes * 2 : 8;
        pgs_jtype **n = realloc(jt->nodes, (size_t)cap * sizeof *n);
        if (n == NULL)
            return NULL;
        jt->nodes = n;
        jt->capnodes = cap;
    }
    pgs_jtype *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->oid = oid;
    t->kind = kind;
    t->delim = ',';
    jt->nodes[jt->nnodes++] = t;
    return t;
}

static void note_fallback(pgs_jtypes *jt, unsigned int oid, int kind)
{
    if (jt->fallback_kind == 0) {
        jt->fallback_kind = kind;
        jt->fallback_oid = oid;
    }
}

enum { BUILD_OOM = -1, BUILD_UNKNOWN = -2 };

/* The tree of type oid in *out; 0, BUILD_UNKNOWN (the table, the cache and
 * the lookup do not know it, or a composite's fields were not looked up)
 * or BUILD_OOM. */
static int build(pgs_jtypes *jt, const pgs_typecache *cache, unsigned int oid, int depth,
                 const pgs_jtype **out)
{
    for (int i = 0; i < jt->nnodes; i++)
        if (jt->nodes[i]->oid == oid && oid != 0) {
            *out = jt->nodes[i];
            return 0;
        }
    if (depth > BUILD_DEPTH) {
        pgs_jtype *t = node_new(jt, oid, PGS_JSON_STRING);
        *out = t;
        return t ? 0 : BUILD_OOM;
    }
    const pgs_builtin *b = pgs_json_builtin(oid);
    const pgs_typeinfo *ti = b ? NULL : cache_find(cache, oid);
    if (b == NULL && ti == NULL)
        return BUILD_UNKNOWN;
    if (ti && ti->typtype == 'd') /* a domain renders as its base type */
        return build(jt, cache, ti->base, depth + 1, out);
    const pgs_jtype *elem = NULL;
    unsigned int elem_oid = b ? b->elem : ti->elem;
    if (elem_oid) {
        int rc = build(jt, cache, elem_oid, depth + 1, &elem);
        if (rc != 0)
            return rc;
    }
    int kind;
    if (b) {
        kind = b->kind;
    } else if (ti->elem) {
        kind = PGS_JT_ARRAY;
    } else if (ti->typtype == 'c') {
        kind = PGS_JT_COMPOSITE;
    } else if (ti->cast) {
        kind = PGS_JT_CAST;
    } else {
        kind = PGS_JSON_STRING; /* enums, ranges, multiranges, other types */
    }
    if (kind == PGS_JT_RECORD || kind == PGS_JT_ANYARRAY || kind == PGS_JT_CAST)
        note_fallback(jt, oid, kind);
    int first = 0, nf = 0;
    if (kind == PGS_JT_COMPOSITE) {
        if (!jt->looked_up)
            return BUILD_UNKNOWN;
        while (first < jt->nattrs && jt->attrs[first].rel_type != oid)
            first++;
        while (first + nf < jt->nattrs && jt->attrs[first + nf].rel_type == oid)
            nf++;
    }
    pgs_jtype *t = node_new(jt, oid, kind);
    if (t == NULL)
        return BUILD_OOM;
    t->elem = elem;
    t->delim = b ? (b->delim ? b->delim : ',') : ti->delim;
    if (nf > 0) {
        t->fields = calloc((size_t)nf, sizeof *t->fields);
        if (t->fields == NULL) {
            t->oid = 0;
            return BUILD_OOM;
        }
        for (int i = 0; i < nf; i++) {
            const pgs_jattr *a = &jt->attrs[first + i];
            int rc = build(jt, cache, a->type, depth + 1, &t->fields[i].type);
            if (rc != 0) {
                t->oid = 0; /* incomplete: never found again */
                return rc;
            }
            pgs_buf key = PGS_BUF_INIT;
            pgs_json_string(&key, a->name, strlen(a->name));
            pgs_buf_putc(&key, ':');
            t->fields[i].key_len = key.len;
            if ((t->fields[i].key = pgs_buf_steal(&key)) == NULL) {
                t->oid = 0;
                return BUILD_OOM;
            }
            t->nfields = i + 1;
        }
    }
    *out = t;
    return 0;
}

int pgs_jtypes_column(pgs_jtypes *jt, const pgs_typecache *cache, unsigned int oid,
                      const pgs_jtype **out)
{
    *out = NULL;
    int kind = pgs_json_kind(oid);
    if (kind != PGS_JSON_TREE && kind != PGS_JSON_UNRESOLVED)
        return kind;
    if (kind == PGS_JSON_UNRESOLVED && !jt->catalog)
        return PGS_JSON_UNRESOLVED; /* without option json, only the built-in table */
    int rc = build(jt, cache, oid, 0, out);
    if (rc == BUILD_OOM)
        return -1;
    if (rc == BUILD_UNKNOWN) {
        *out = NULL;
        return PGS_JSON_UNRESOLVED;
    }
    return PGS_JSON_TREE;
}

static int server_only(const pgs_jtype *t, int depth)
{
    if (t == NULL || depth > BUILD_DEPTH)
        return 0;
    if (t->kind == PGS_JT_RECORD || t->kind == PGS_JT_ANYARRAY || t->kind == PGS_JT_CAST)
        return 1;
    for (int i = 0; i < t->nfields; i++)
        if (server_only(t->fields[i].type, depth + 1))
            return 1;
    return server_only(t->elem, depth + 1);
}

int pgs_jtype_server_only(const pgs_jtype *t) { return server_only(t, 0); }

void pgs_jtypes_free(pgs_jtypes *jt)
{
    for (int i = 0; i < jt->nnodes; i++) {
        for (int f = 0; f < jt->nodes[i]->nfields; f++)
            free(jt->nodes[i]->fields[f].key);
        free(jt->nodes[i]->fields);
        free(jt->nodes[i]);
    }
    free(jt->nodes);
    for (int i = 0; i < jt->nattrs; i++)
        free(jt->attrs[i].name);
    free(jt->attrs);
    free(jt->need);
    memset(jt, 0, sizeof *jt);
}
