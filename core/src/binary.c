/* binary.c - binary-format values (what a stream opened with option binary
 * hands over) to C values and back to the text PostgreSQL would have sent,
 * and which column types such a stream takes in binary. No allocation, any
 * thread. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The types a binary row stream takes in binary: those whose binary form
 * every binding decodes to the value, or renders to exactly the text the
 * server would have sent in this session (DateStyle ISO; timestamptz only in
 * a UTC session, as its binary form has no zone). Not float4: its text is
 * the shortest decimal, which reads back as another double than the float's
 * own; not bytea: its text depends on bytea_output, which the server does
 * not report. */
int pgs_rows_binary_ok(unsigned int oid, PGconn *pg)
{
    const char *ds = PQparameterStatus(pg, "DateStyle"), *tz = PQparameterStatus(pg, "TimeZone");
    int iso = ds != NULL && strncmp(ds, "ISO", 3) == 0;
    switch (oid) {
    case 16:   /* bool */
    case 19:   /* name */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 25:   /* text */
    case 114:  /* json */
    case 701:  /* float8 */
    case 1042: /* bpchar */
    case 1043: /* varchar */
    case 1700: /* numeric */
    case 2950: /* uuid */
    case 3802: /* jsonb */ return 1;
    case 1082: /* date */
    case 1083: /* time */
    case 1114: /* timestamp */
    case 1266: /* timetz */ return iso;
    case 1184: /* timestamptz */
        return iso && tz != NULL &&
               (!strcmp(tz, "UTC") || !strcmp(tz, "Etc/UTC") || !strcmp(tz, "GMT") ||
                !strcmp(tz, "Etc/GMT"));
    default: return 0;
    }
}

static uint64_t be(const char *v, size_t n)
{
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = x << 8 | (unsigned char)v[i];
    return x;
}

int pgspout_binary_int8(const char *v, size_t len, int64_t *out)
{
    if (v == NULL || out == NULL || (len != 2 && len != 4 && len != 8))
        return PGSPOUT_EINVAL;
    uint64_t x = be(v, len);
    *out = len == 2 ? (int16_t)x : len == 4 ? (int32_t)x : (int64_t)x;
    return PGSPOUT_OK;
}

int pgspout_binary_float8(const char *v, size_t len, double *out)
{
    if (v == NULL || out == NULL || (len != 4 && len != 8))
        return PGSPOUT_EINVAL;
    uint64_t x = be(v, len);
    if (len == 4) {
        uint32_t w = (uint32_t)x;
        float f;
        memcpy(&f, &w, 4);
        *out = f;
    } else {
        memcpy(out, &x, 8);
    }
    return PGSPOUT_OK;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
 * civil_from_days), astronomical years. */
static void civil(int64_t z, pgspout_datetime *t)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    t->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    t->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    t->year = (int)(yoe + era * 400 + (t->month <= 2));
}

#define PG_EPOCH_DAYS 10957 /* 2000-01-01 - 1970-01-01 */
#define DAY_US        INT64_C(86400000000)

static void time_of_day(int64_t us, pgspout_datetime *t)
{
    t->usec = (int)(us % 1000000);
    us /= 1000000;
    t->second = (int)(us % 60);
    t->minute = (int)(us / 60 % 60);
    t->hour = (int)(us / 3600);
}

int pgspout_binary_datetime(const char *v, size_t len, int kind, pgspout_datetime *out)
{
    pgspout_datetime t = {0};
    if (v == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    switch (kind) {
    case PGSPOUT_KIND_DATE: {
        if (len != 4)
            return PGSPOUT_EINVAL;
        int32_t d = (int32_t)be(v, 4);
        if (d == INT32_MAX || d == INT32_MIN)
            t.infinity = d == INT32_MAX ? 1 : -1;
        else
            civil((int64_t)d + PG_EPOCH_DAYS, &t);
        break;
    }
    case PGSPOUT_KIND_TIME:
    case PGSPOUT_KIND_TIMETZ: {
        if (len != (kind == PGSPOUT_KIND_TIME ? 8u : 12u))
            return PGSPOUT_EINVAL;
        int64_t us = (int64_t)be(v, 8);
        if (us < 0 || us > DAY_US)
            return PGSPOUT_EINVAL;
        time_of_day(us, &t);
        if (kind == PGSPOUT_KIND_TIMETZ)
            t.utc_offset = -(int32_t)be(v + 8, 4); /* sent as seconds west */
        break;
    }
    case PGSPOUT_KIND_TIMESTAMP:
    case PGSPOUT_KIND_TIMESTAMPTZ: {
        if (len != 8)
            return PGSPOUT_EINVAL;
        int64_t us = (int64_t)be(v, 8);
        if (us == INT64_MAX || us == INT64_MIN) {
            t.infinity = us == INT64_MAX ? 1 : -1;
            break;
        }
        int64_t days = us / DAY_US, rest = us % DAY_US;
        if (rest < 0) {
            rest += DAY_US;
            days--;
        }
        civil(days + PG_EPOCH_DAYS, &t);
        time_of_day(rest, &t);
        break;
    }
    default: return PGSPOUT_EINVAL;
    }
    *out = t;
    return PGSPOUT_OK;
}

/* ------------------------------------------------ the server's text form */

typedef struct {
    char *p;
    size_t n, cap;
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
    if (o->n + n < o->cap)
        memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void putf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(out_buf *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(o, tmp, n > 0 ? (size_t)n : 0);
}

/* numeric_out: base-10000 digits, weight of the first, display scale */
static int numeric_text(const char *v, size_t len, out_buf *o)
{
    if (len < 8)
        return PGSPOUT_EINVAL;
    int nd = (int16_t)be(v, 2), weight = (int16_t)be(v + 2, 2);
    unsigned sign = (unsigned)be(v + 4, 2), dscale = (unsigned)be(v + 6, 2);
    if (nd < 0 || len != 8 + 2 * (size_t)nd)
        return PGSPOUT_EINVAL;
    if (sign == 0xC000 || sign == 0xD000 || sign == 0xF000) {
        const char *w = sign == 0xC000 ? "NaN" : sign == 0xD000 ? "Infinity" : "-Infinity";
        put(o, w, strlen(w));
        return PGSPOUT_OK;
    }
    if (sign != 0 && sign != 0x4000)
        return PGSPOUT_EINVAL;
#define DIGIT(i) ((i) >= 0 && (i) < nd ? (int)be(v + 8 + 2 * (i), 2) : 0)
    char g[4];
    if (sign == 0x4000)
        put(o, "-", 1);
    if (weight < 0)
        put(o, "0", 1);
    for (int i = 0; i <= weight; i++) {
        int k = 4;
        for (int d = DIGIT(i); k > 0; d /= 10)
            g[--k] = (char)('0' + d % 10);
        for (k = 0; i == 0 && k < 3 && g[k] == '0'; k++) /* no leading zeros */
            ;
        put(o, g + k, (size_t)(4 - k));
    }
    if (dscale > 0)
        put(o, ".", 1);
    for (unsigned k = 0; k < dscale; k += 4) {
        int d = DIGIT(weight + 1 + (int)(k / 4));
        for (int j = 3; j >= 0; j--, d /= 10)
            g[j] = (char)('0' + d % 10);
        put(o, g, dscale - k < 4 ? dscale - k : 4);
    }
#undef DIGIT
    return PGSPOUT_OK;
}

/* DateStyle ISO, as EncodeDateOnly/EncodeTimeOnly/EncodeDateTime write it */
static void datetime_text(const pgspout_datetime *t, int kind, out_buf *o)
{
    int has_date = kind == PGSPOUT_KIND_DATE || kind >= PGSPOUT_KIND_TIMESTAMP;
    int has_time = kind != PGSPOUT_KIND_DATE;
    if (t->infinity) {
        put(o, t->infinity > 0 ? "infinity" : "-infinity", t->infinity > 0 ? 8 : 9);
        return;
    }
    if (has_date)
        putf(o, "%04d-%02d-%02d", t->year > 0 ? t->year : 1 - t->year, t->month, t->day);
    if (has_time) {
        putf(o, "%s%02d:%02d:%02d", has_date ? " " : "", t->hour, t->minute, t->second);
        if (t->usec) {
            char f[8];
            int n = snprintf(f, sizeof f, ".%06d", t->usec);
            while (f[n - 1] == '0')
                n--;
            put(o, f, (size_t)n);
        }
    }
    if (kind == PGSPOUT_KIND_TIMETZ || kind == PGSPOUT_KIND_TIMESTAMPTZ) {
        int off = t->utc_offset < 0 ? -t->utc_offset : t->utc_offset;
        putf(o, "%c%02d", t->utc_offset < 0 ? '-' : '+', off / 3600);
        if (off % 3600)
            putf(o, ":%02d", off / 60 % 60);
        if (off % 60)
            putf(o, ":%02d", off % 60);
    }
    if (has_date && t->year <= 0)
        put(o, " BC", 3);
}

int pgspout_binary_text(unsigned int oid, const char *v, size_t len, char *out, size_t cap,
                        size_t *outlen)
{
    static const char hex[] = "0123456789abcdef";
    out_buf o = {out, 0, out ? cap : 0};
    int64_t i;
    pgspout_datetime t;
    int rc = PGSPOUT_OK, kind = pgspout_type_kind(oid);
    if (v == NULL || outlen == NULL)
        return PGSPOUT_EINVAL;
    switch (oid) {
    case 16:
        if (len != 1)
            return PGSPOUT_EINVAL;
        put(&o, v[0] ? "t" : "f", 1);
        break;
    case 20:
    case 21:
    case 23:
        if ((rc = pgspout_binary_int8(v, len, &i)) == PGSPOUT_OK)
            putf(&o, "%lld", (long long)i);
        break;
    case 1700: rc = numeric_text(v, len, &o); break;
    case 2950:
        if (len != 16)
            return PGSPOUT_EINVAL;
        for (size_t k = 0; k < 16; k++) {
            char h[3] = {hex[(unsigned char)v[k] >> 4], hex[v[k] & 15], '-'};
            put(&o, h, k == 3 || k == 5 || k == 7 || k == 9 ? 3 : 2);
        }
        break;
    case 3802: /* jsonb: a version byte, then the text */
        if (len < 1 || v[0] != 1)
            return PGSPOUT_EINVAL;
        put(&o, v + 1, len - 1);
        break;
    case 19:
    case 25:
    case 114:
    case 1042:
    case 1043: put(&o, v, len); break;
    default:
        if (kind < PGSPOUT_KIND_DATE || kind > PGSPOUT_KIND_TIMESTAMPTZ)
            return PGSPOUT_EINVAL;
        if ((rc = pgspout_binary_datetime(v, len, kind, &t)) == PGSPOUT_OK)
            datetime_text(&t, kind, &o);
    }
    if (rc != PGSPOUT_OK)
        return rc;
    *outlen = o.n;
    if (o.n >= cap)
        return PGSPOUT_EINVAL;
    out[o.n] = '\0';
    return PGSPOUT_OK;
}
