/* arrow.c - a stream's rows as Arrow record batches through the Arrow C
 * stream interface (pgspout_stream_arrow): one batch per chunk, columns
 * built from the text values with the parsers of values.c. Plain C structs
 * only: no Arrow library on either side. */
#include "internal.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

/* How a column becomes Arrow: its format and converter. */
enum {
    A_UTF8, /* text types, json, numeric without a fitting typmod, the rest */
    A_BOOL,
    A_I16,
    A_I32,
    A_U32,
    A_I64,
    A_F32,
    A_F64,
    A_DEC128,
    A_BINARY,
    A_DATE32,
    A_TIME64,
    A_TS,
    A_TSTZ,
    A_INTERVAL,
    A_UUID
};

typedef struct acol {
    int conv;
    int prec, scale; /* A_DEC128 */
    char format[16];
} acol;

typedef struct astream {
    pgspout_stream *s; /* NULL once the stream was closed first */
    acol *cols;
    int ncols;
    char err[512];
} astream;

static size_t width_of(int conv)
{
    switch (conv) {
    case A_I16: return 2;
    case A_I32:
    case A_U32:
    case A_F32:
    case A_DATE32: return 4;
    case A_I64:
    case A_F64:
    case A_TIME64:
    case A_TS:
    case A_TSTZ: return 8;
    case A_DEC128:
    case A_INTERVAL:
    case A_UUID: return 16;
    default: return 0;
    }
}

/* numeric(p,s)'s typmod ((p << 16) | s) + 4 when decimal128 holds its
 * values (1 <= p <= 38, 0 <= s <= p): 1 with *prec and *scale set, else 0
 * (no typmod, or one Arrow has no decimal128 for). */
static int decimal_typmod(int mod, int *prec, int *scale)
{
    if (mod < 4)
        return 0;
    int p = ((mod - 4) >> 16) & 0xffff, sc = (mod - 4) & 0x7ff;
    if (p < 1 || p > 38 || sc > p)
        return 0;
    *prec = p;
    *scale = sc;
    return 1;
}

static void plan_column(const PGresult *meta, int c, acol *col)
{
    unsigned int oid = PQftype(meta, c);
    static const struct {
        unsigned int oid;
        int conv;
        const char *format;
    } fixed[] = {
        {16, A_BOOL, "b"},         {17, A_BINARY, "z"},    {20, A_I64, "l"},
        {21, A_I16, "s"},          {23, A_I32, "i"},       {26, A_U32, "I"},
        {700, A_F32, "f"},         {701, A_F64, "g"},      {1082, A_DATE32, "tdD"},
        {1083, A_TIME64, "ttu"},   {1114, A_TS, "tsu:"},   {1184, A_TSTZ, "tsu:UTC"},
        {1186, A_INTERVAL, "tin"}, {2950, A_UUID, "w:16"},
    };
    col->conv = A_UTF8;
    strcpy(col->format, "u");
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (fixed[i].oid == oid) {
            col->conv = fixed[i].conv;
            strcpy(col->format, fixed[i].format);
        }
    if (oid == 1700 && decimal_typmod(PQfmod(meta, c), &col->prec, &col->scale)) {
        col->conv = A_DEC128;
        snprintf(col->format, sizeof col->format, "d:%d,%d", col->prec, col->scale);
    }
}

/* ------------------------------------------------------------- schema */

typedef struct schema_priv {
    struct ArrowSchema **kids;
    struct ArrowSchema *kid_mem;
    char **strings; /* formats and names of the children */
    int nstrings;
} schema_priv;

static void schema_release(struct ArrowSchema *sc)
{
    schema_priv *p = sc->private_data;
    if (p != NULL) {
        for (int64_t i = 0; i < sc->n_children; i++)
            if (p->kid_mem[i].release != NULL)
                p->kid_mem[i].release(&p->kid_mem[i]);
        for (int i = 0; i < p->nstrings; i++)
            free(p->strings[i]);
        free(p->strings);
        free(p->kids);
        free(p->kid_mem);
        free(p);
    }
    sc->release = NULL;
}

static void kid_schema_release(struct ArrowSchema *sc) { sc->release = NULL; }

/* "arrow.uuid" extension metadata, in the C data interface's encoding:
 * int32 pair count, then int32 length + bytes for each key and value. */
static const char uuid_meta[] = "\x01\x00\x00\x00"
                                "\x14\x00\x00\x00"
                                "ARROW:extension:name"
                                "\x0a\x00\x00\x00"
                                "arrow.uuid";

static int get_schema(struct ArrowArrayStream *st, struct ArrowSchema *out)
{
    astream *a = st->private_data;
    if (a->s == NULL) {
        snprintf(a->err, sizeof a->err, "estate: the pgspout stream was closed");
        return EIO;
    }
    int n = a->ncols;
    schema_priv *p = calloc(1, sizeof *p);
    if (p == NULL)
        return ENOMEM;
    p->kids = calloc((size_t)n + 1, sizeof *p->kids);
    p->kid_mem = calloc((size_t)n + 1, sizeof *p->kid_mem);
    p->strings = calloc((size_t)n + 1, sizeof *p->strings);
    memset(out, 0, sizeof *out);
    out->format = "+s";
    out->name = "";
    out->n_children = 0;
    out->children = p->kids;
    out->release = schema_release;
    out->private_data = p;
    if (!p->kids || !p->kid_mem || !p->strings) {
        schema_release(out);
        return ENOMEM;
    }
    for (int c = 0; c < n; c++) {
        struct ArrowSchema *k = &p->kid_mem[c];
        char *name = strdup(PQfname(a->s->meta, c));
        if (name == NULL) {
            schema_release(out);
            return ENOMEM;
        }
        p->strings[p->nstrings++] = name;
        k->format = a->cols[c].format;
        k->name = name;
        k->metadata = a->cols[c].conv == A_UUID ? uuid_meta : NULL;
        k->flags = ARROW_FLAG_NULLABLE;
        k->release = kid_schema_release;
        p->kids[c] = k;
        out->n_children++;
    }
    return 0;
}

/* ------------------------------------------------------------- arrays */

typedef struct array_priv {
    const void *bufs[3];
    void *own[3];
    struct ArrowArray **kids;
    struct ArrowArray *kid_mem;
} array_priv;

static void array_release(struct ArrowArray *arr)
{
    array_priv *p = arr->private_data;
    if (p != NULL) {
        for (int64_t i = 0; p->kid_mem && i < arr->n_children; i++)
            if (p->kid_mem[i].release != NULL)
                p->kid_mem[i].release(&p->kid_mem[i]);
        for (int i = 0; i < 3; i++)
            free(p->own[i]);
        free(p->kids);
        free(p->kid_mem);
        free(p);
    }
    arr->release = NULL;
}

static int fail_at(astream *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof a->err, fmt, ap);
    va_end(ap);
    return EIO;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* numeric text with exactly as many decimals as the scale (the server
 * prints numeric(p,s) so) into a little-endian 128-bit integer. */
static int decimal128(const char *v, size_t len, int scale, unsigned char out[16])
{
    __extension__ typedef __int128 i128;
    i128 x = 0;
    size_t i = 0;
    int neg = 0, frac = -1;
    if (len > 0 && v[0] == '-')
        neg = 1, i = 1;
    if (i == len)
        return -1;
    for (; i < len; i++) {
        if (v[i] == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (v[i] < '0' || v[i] > '9')
            return -1; /* NaN, Infinity */
        x = x * 10 + (v[i] - '0');
        frac += frac >= 0;
    }
    for (frac = frac < 0 ? 0 : frac; frac < scale; frac++)
        x *= 10;
    if (frac != scale)
        return -1;
    if (neg)
        x = -x;
    memcpy(out, &x, 16); /* x86-64 and aarch64 are little-endian */
    return 0;
}

/* ------------------------------------------------------ binary values */

int pgs_arrow_binary_ok(unsigned int oid, int typmod)
{
    int prec, scale;
    switch (oid) {
    case 1700: /* numeric: only as decimal128; unconstrained it stays text */
        return decimal_typmod(typmod, &prec, &scale);
    case 16:   /* bool */
    case 17:   /* bytea */
    case 18:   /* "char" */
    case 19:   /* name */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 25:   /* text */
    case 26:   /* oid */
    case 114:  /* json: the text */
    case 700:  /* float4 */
    case 701:  /* float8 */
    case 1042: /* bpchar */
    case 1043: /* varchar */
    case 1082: /* date */
    case 1083: /* time */
    case 1114: /* timestamp */
    case 1184: /* timestamptz */
    case 1186: /* interval */
    case 2950: /* uuid */
    case 3802: /* jsonb: a version byte, then the text */ return 1;
    default: /* no decoder here */ return 0;
    }
}

static uint64_t be(const char *v, size_t n)
{
    uint64_t x = 0;
    for (size_t k = 0; k < n; k++)
        x = x << 8 | (unsigned char)v[k];
    return x;
}

#define PG_EPOCH_DAYS 10957 /* 1970-01-01 to 2000-01-01, PostgreSQL's epoch */

/* numeric's binary form (ndigits, weight, sign, dscale, then base-10000
 * digits worth 10000^(weight - k)) as decimal128 at the column's scale. */
static int binary_decimal(astream *a, int c, const char *v, size_t len, unsigned char out[16])
{
    __extension__ typedef __int128 i128;
    size_t nd = len >= 8 ? be(v, 2) : 0;
    int weight = (int16_t)be(v + 2, 2), sign = (int)be(v + 4, 2), scale = a->cols[c].scale;
    if (len < 8 || len != 8 + 2 * nd || (sign != 0 && sign != 0x4000))
        return fail_at(a,
                       "evalue: column %d: numeric NaN or Infinity has no decimal128(%d,%d) "
                       "value",
                       c + 1, a->cols[c].prec, scale);
    i128 x = 0;
    int e10 = scale; /* x * 10^e10 once the digits are in */
    for (size_t k = 0; k < nd; k++)
        x = x * 10000 + (i128)be(v + 8 + 2 * k, 2);
    e10 += 4 * (weight - (int)nd + 1);
    for (; e10 > 0; e10--)
        x *= 10;
    for (; e10 < 0; e10++)
        x /= 10; /* exact: the value has at most scale decimals */
    if (sign == 0x4000)
        x = -x;
    memcpy(out, &x, 16);
    return 0;
}

/* Binary value v of column c into slot i of data (sizes as the server sends
 * them; anything else is refused). */
static int binary_fixed(astream *a, int c, const char *v, size_t len, unsigned char *data,
                        int64_t i)
{
    int conv = a->cols[c].conv;
    size_t want = conv == A_BOOL ? 1 : conv == A_INTERVAL ? 16 : width_of(conv);
    if (conv == A_DEC128)
        return binary_decimal(a, c, v, len, data + 16 * i);
    if (len != want)
        return fail_at(a, "evalue: column %d: a binary value of %zu bytes", c + 1, len);
    uint64_t x = be(v, len);
    int64_t t;
    switch (conv) {
    case A_BOOL:
        if (v[0])
            data[i / 8] |= (uint8_t)(1u << (i % 8));
        return 0;
    case A_I16: ((int16_t *)data)[i] = (int16_t)x; return 0;
    case A_I32:
    case A_U32:
    case A_F32: ((uint32_t *)data)[i] = (uint32_t)x; return 0;
    case A_DATE32: {
        int32_t d = (int32_t)x; /* +-infinity are the int32 extremes already */
        ((int32_t *)data)[i] = d == INT32_MAX || d == INT32_MIN ? d : d + PG_EPOCH_DAYS;
        return 0;
    }
    case A_TS:
    case A_TSTZ:
        t = (int64_t)x;
        if (t != INT64_MAX && t != INT64_MIN)
            t += (int64_t)PG_EPOCH_DAYS * 86400 * 1000000;
        ((int64_t *)data)[i] = t;
        return 0;
    case A_INTERVAL: { /* time (int64 us), days, months -> months, days, ns */
        int64_t us = (int64_t)be(v, 8);
        int32_t days = (int32_t)be(v + 8, 4), months = (int32_t)be(v + 12, 4);
        if (us > INT64_MAX / 1000 || us < INT64_MIN / 1000)
            return fail_at(a, "evalue: column %d: an interval overflows nanoseconds", c + 1);
        t = us * 1000;
        memcpy(data + 16 * i, &months, 4);
        memcpy(data + 16 * i + 4, &days, 4);
        memcpy(data + 16 * i + 8, &t, 8);
        return 0;
    }
    case A_UUID: memcpy(data + 16 * i, v, 16); return 0;
    default: /* I64, U64, F64, TIME64: 8 bytes, host order */ ((uint64_t *)data)[i] = x; return 0;
    }
}

/* Value v (len bytes) of column c into slot i of data. */
static int convert_fixed(astream *a, int c, const char *v, size_t len, unsigned char *data,
                         int64_t i)
{
    const acol *col = &a->cols[c];
    int64_t x;
    double d;
    pgspout_datetime t;
    pgspout_interval iv;
    int kind = col->conv == A_DATE32   ? PGSPOUT_KIND_DATE
               : col->conv == A_TIME64 ? PGSPOUT_KIND_TIME
               : col->conv == A_TS     ? PGSPOUT_KIND_TIMESTAMP
                                       : PGSPOUT_KIND_TIMESTAMPTZ;
    switch (col->conv) {
    case A_I16:
    case A_I32:
    case A_U32:
    case A_I64:
        if (pgspout_parse_int8(v, len, &x) != PGSPOUT_OK)
            break;
        if (col->conv == A_I16)
            ((int16_t *)data)[i] = (int16_t)x;
        else if (col->conv == A_I32)
            ((int32_t *)data)[i] = (int32_t)x;
        else if (col->conv == A_U32)
            ((uint32_t *)data)[i] = (uint32_t)x;
        else
            ((int64_t *)data)[i] = x;
        return 0;
    case A_F32:
    case A_F64:
        if (pgspout_parse_float8(v, len, &d) != PGSPOUT_OK)
            break;
        if (col->conv == A_F32)
            ((float *)data)[i] = (float)d;
        else
            ((double *)data)[i] = d;
        return 0;
    case A_DEC128:
        if (decimal128(v, len, col->scale, data + 16 * i) == 0)
            return 0;
        return fail_at(a, "evalue: column %d: numeric \"%.*s\" has no decimal128(%d,%d) value",
                       c + 1, (int)(len < 64 ? len : 64), v, col->prec, col->scale);
    case A_DATE32:
    case A_TIME64:
    case A_TS:
    case A_TSTZ:
        if (pgspout_parse_datetime(v, len, kind, &t) != PGSPOUT_OK)
            break;
        if (col->conv == A_DATE32) { /* +-infinity as PostgreSQL stores them */
            int64_t days = t.infinity ? (t.infinity > 0 ? INT32_MAX : INT32_MIN)
                                      : days_from_civil(t.year, t.month, t.day);
            ((int32_t *)data)[i] = (int32_t)days;
        } else if (t.infinity) {
            ((int64_t *)data)[i] = t.infinity > 0 ? INT64_MAX : INT64_MIN;
        } else {
            int64_t days = col->conv == A_TIME64 ? 0 : days_from_civil(t.year, t.month, t.day);
            int64_t secs = days * 86400 + t.hour * 3600 + t.minute * 60 + t.second - t.utc_offset;
            ((int64_t *)data)[i] = secs * 1000000 + t.usec;
        }
        return 0;
    case A_INTERVAL:
        if (pgspout_parse_interval(v, len, &iv) != PGSPOUT_OK)
            break;
        if (iv.usec > INT64_MAX / 1000 || iv.usec < INT64_MIN / 1000)
            return fail_at(a, "evalue: column %d: interval \"%.*s\" overflows nanoseconds", c + 1,
                           (int)(len < 64 ? len : 64), v);
        x = iv.usec * 1000;
        memcpy(data + 16 * i, &iv.months, 4);
        memcpy(data + 16 * i + 4, &iv.days, 4);
        memcpy(data + 16 * i + 8, &x, 8);
        return 0;
    case A_UUID:
        if (pgspout_parse_uuid(v, len, data + 16 * i) != PGSPOUT_OK)
            break;
        return 0;
    }
    return fail_at(a,
                   "evalue: column %d: \"%.*s\" is not in the text form Arrow conversion reads "
                   "(DateStyle ISO, IntervalStyle postgres)",
                   c + 1, (int)(len < 64 ? len : 64), v);
}

/* Column c of the chunk's rows into kid. */
static int build_column(astream *a, int c, const pgspout_chunk *ch, int64_t n,
                        struct ArrowArray *kid)
{
    const acol *col = &a->cols[c];
    array_priv *p = calloc(1, sizeof *p);
    if (p == NULL)
        return ENOMEM;
    memset(kid, 0, sizeof *kid);
    kid->length = n;
    kid->n_buffers = col->conv == A_UTF8 || col->conv == A_BINARY ? 3 : 2;
    kid->buffers = p->bufs;
    kid->release = array_release;
    kid->private_data = p;
    size_t bitmap = ((size_t)n + 7) / 8;
    uint8_t *valid = p->own[0] = calloc(bitmap + 1, 1);
    if (valid == NULL)
        return ENOMEM;
    if (col->conv == A_UTF8 || col->conv == A_BINARY) {
        size_t total = 0, len;
        for (int64_t i = 0; i < n; i++) {
            pgspout_row_value(pgspout_chunk_row(ch, (int)i), c, &len);
            total += len;
        }
        if (total > INT32_MAX)
            return fail_at(a,
                           "etoobig: column %d: %zu bytes in one batch (Arrow offsets are "
                           "32-bit); lower chunk_bytes",
                           c + 1, total);
        int32_t *off = p->own[1] = malloc(((size_t)n + 1) * sizeof *off);
        unsigned char *bytes = p->own[2] = malloc(total + 1);
        if (off == NULL || bytes == NULL)
            return ENOMEM;
        size_t at = 0;
        off[0] = 0;
        for (int64_t i = 0; i < n; i++) {
            const pgspout_row *r = pgspout_chunk_row(ch, (int)i);
            const char *v = pgspout_row_value(r, c, &len);
            if (pgspout_row_isnull(r, c)) {
                kid->null_count++;
            } else if (col->conv == A_BINARY && !a->s->binary) {
                valid[i / 8] |= (uint8_t)(1u << (i % 8));
                size_t got = 0;
                if (pgspout_parse_bytea(v, len, bytes + at, total - at, &got) != PGSPOUT_OK)
                    return fail_at(a, "evalue: column %d: malformed bytea", c + 1);
                at += got;
            } else {
                size_t skip = a->s->binary && PQftype(a->s->meta, c) == 3802; /* jsonb version */
                valid[i / 8] |= (uint8_t)(1u << (i % 8));
                if (skip > len)
                    return fail_at(a, "evalue: column %d: an empty binary jsonb", c + 1);
                memcpy(bytes + at, v + skip, len - skip);
                at += len - skip;
            }
            off[i + 1] = (int32_t)at;
        }
    } else {
        size_t w = width_of(col->conv);
        unsigned char *data = p->own[1] =
            calloc(col->conv == A_BOOL ? bitmap + 1 : (size_t)n * w + 1, 1);
        if (data == NULL)
            return ENOMEM;
        for (int64_t i = 0; i < n; i++) {
            const pgspout_row *r = pgspout_chunk_row(ch, (int)i);
            size_t len;
            const char *v = pgspout_row_value(r, c, &len);
            if (pgspout_row_isnull(r, c)) {
                kid->null_count++;
                continue;
            }
            valid[i / 8] |= (uint8_t)(1u << (i % 8));
            if (a->s->binary) {
                if (binary_fixed(a, c, v, len, data, i) != 0)
                    return EIO;
            } else if (col->conv == A_BOOL) {
                if (v[0] == 't')
                    data[i / 8] |= (uint8_t)(1u << (i % 8));
            } else if (convert_fixed(a, c, v, len, data, i) != 0) {
                return EIO;
            }
        }
    }
    for (int b = 0; b < 3; b++)
        p->bufs[b] = p->own[b];
    if (kid->null_count == 0)
        p->bufs[0] = NULL;
    return 0;
}

static int get_next(struct ArrowArrayStream *st, struct ArrowArray *out)
{
    astream *a = st->private_data;
    const pgspout_chunk *ch = NULL;
    memset(out, 0, sizeof *out);
    if (a->s == NULL)
        return fail_at(a, "estate: the pgspout stream was closed");
    int rc = pgs_stream_next_chunk(a->s, 0, &ch);
    if (rc == PGSPOUT_DONE)
        return 0;           /* out->release == NULL: the end */
    if (rc != PGSPOUT_OK) { /* the message names the SQLSTATE, if not already */
        const char *msg = pgspout_stream_error(a->s), *state = pgspout_stream_sqlstate(a->s);
        int add = *state && strstr(msg, state) == NULL;
        return fail_at(a, "%s: %s%s%s%s", pgspout_code_name(rc), msg, add ? " (SQLSTATE " : "",
                       add ? state : "", add ? ")" : "");
    }
    int64_t n = pgspout_chunk_nrows(ch);
    array_priv *p = calloc(1, sizeof *p);
    if (p == NULL)
        return ENOMEM;
    out->length = n;
    out->n_buffers = 1;
    out->buffers = p->bufs;
    out->release = array_release;
    out->private_data = p;
    p->kids = calloc((size_t)a->ncols + 1, sizeof *p->kids);
    p->kid_mem = calloc((size_t)a->ncols + 1, sizeof *p->kid_mem);
    out->children = p->kids;
    int err = p->kids && p->kid_mem ? 0 : ENOMEM;
    for (int c = 0; c < a->ncols && err == 0; c++) {
        p->kids[c] = &p->kid_mem[c];
        out->n_children++;
        err = build_column(a, c, ch, n, &p->kid_mem[c]);
    }
    if (err != 0) {
        if (err == ENOMEM)
            snprintf(a->err, sizeof a->err, "enomem: out of memory building a record batch");
        array_release(out);
        return err;
    }
    return 0;
}

static const char *get_last_error(struct ArrowArrayStream *st)
{
    astream *a = st->private_data;
    return a->err[0] ? a->err : NULL;
}

static void stream_release(struct ArrowArrayStream *st)
{
    astream *a = st->private_data;
    if (a != NULL) {
        if (a->s != NULL)
            a->s->arrow = NULL;
        free(a->cols);
        free(a);
    }
    st->release = NULL;
}

void pgs_arrow_detach(pgspout_stream *s)
{
    if (s->arrow != NULL)
        ((astream *)s->arrow)->s = NULL;
    s->arrow = NULL;
}

int pgspout_stream_binary(const pgspout_stream *s) { return s != NULL && s->binary; }

int pgspout_stream_arrow(pgspout_stream *s, struct ArrowArrayStream *out)
{
    if (s == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    if (s->arrow != NULL)
        return PGSPOUT_ESTATE;
    astream *a = calloc(1, sizeof *a);
    if (a == NULL)
        return PGSPOUT_ENOMEM;
    a->ncols = s->meta ? PQnfields(s->meta) : 0;
    a->cols = calloc((size_t)a->ncols + 1, sizeof *a->cols);
    if (a->cols == NULL) {
        free(a);
        return PGSPOUT_ENOMEM;
    }
    for (int c = 0; c < a->ncols; c++)
        plan_column(s->meta, c, &a->cols[c]);
    a->s = s;
    s->arrow = a;
    out->get_schema = get_schema;
    out->get_next = get_next;
    out->get_last_error = get_last_error;
    out->release = stream_release;
    out->private_data = a;
    return PGSPOUT_OK;
}
