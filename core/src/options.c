/* options.c - string key/value options with units (pgspout_options_*). */
#include "options.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

enum kind { K_INT, K_SIZE, K_DUR, K_FRAC, K_RATE, K_BOOL, K_ENUM, K_LABEL, K_SNAPSHOT };

typedef struct opt_def {
    const char *key;
    enum kind kind;
    size_t off;
    int64_t min, max;    /* K_INT, K_SIZE, K_DUR (ms) */
    const char *choices; /* K_ENUM: "a|b|c", index stored as int */
} opt_def;

#define OFF(f) offsetof(pgspout_options, f)
#define I64MAX INT64_MAX
/* durations are added to nanosecond clocks: keep ms * 1e6 + now in range */
#define DURMAX (INT64_MAX / 1000000 / 2)
static const opt_def defs[] = {
    {"chunk_rows", K_INT, OFF(chunk_rows), 1, 10000000, NULL},
    {"chunk_bytes", K_SIZE, OFF(chunk_bytes), 1, I64MAX, NULL},
    {"adaptive_chunking", K_BOOL, OFF(adaptive_chunking), 0, 0, NULL},
    {"chunk_rows_min", K_INT, OFF(chunk_rows_min), 1, 10000000, NULL},
    {"chunk_rows_max", K_INT, OFF(chunk_rows_max), 1, 10000000, NULL},
    {"max_memory", K_SIZE, OFF(max_memory), 1024, I64MAX, NULL},
    {"memory_warn", K_FRAC, OFF(memory_warn), 0, 0, NULL},
    {"memory_fail", K_FRAC, OFF(memory_fail), 0, 0, NULL},
    {"max_rows", K_INT, OFF(max_rows), 0, I64MAX, NULL},
    {"timeout", K_DUR, OFF(timeout_ms), 0, DURMAX, NULL},
    {"statement_timeout", K_DUR, OFF(statement_timeout_ms), 0, INT32_MAX, NULL},
    {"cancel_timeout", K_DUR, OFF(cancel_timeout_ms), 1, INT32_MAX, NULL},
    {"pause_timeout", K_DUR, OFF(pause_timeout_ms), 0, DURMAX, NULL},
    {"on_pause_timeout", K_ENUM, OFF(on_pause_timeout_cancel), 0, 0, "resume|cancel"},
    {"max_rate", K_RATE, OFF(max_rate), 0, 0, NULL},
    {"label", K_LABEL, OFF(label), 0, 0, NULL},
    {"expected_rows", K_INT, OFF(expected_rows), 0, I64MAX, NULL},
    {"metrics", K_BOOL, OFF(metrics), 0, 0, NULL},
    {"progress_rows", K_INT, OFF(progress_rows), 0, I64MAX, NULL},
    {"progress_interval", K_DUR, OFF(progress_interval_ms), 0, DURMAX, NULL},
    {"idle_timeout", K_DUR, OFF(idle_timeout_ms), 0, DURMAX, NULL},
    {"pool", K_BOOL, OFF(pool), 0, 0, NULL},
    {"arrow", K_BOOL, OFF(arrow), 0, 0, NULL},
    {"binary", K_BOOL, OFF(binary), 0, 0, NULL},
    {"json", K_BOOL, OFF(json), 0, 0, NULL},
    {"snapshot", K_SNAPSHOT, OFF(snapshot), 0, 0, NULL},
    {"connect_timeout", K_DUR, OFF(connect_timeout_ms), 0, INT32_MAX, NULL},
    {"keepalives_idle", K_DUR, OFF(keepalives_idle_ms), 0, INT32_MAX, NULL},
    {"keepalives_interval", K_DUR, OFF(keepalives_interval_ms), 0, INT32_MAX, NULL},
    {"keepalives_count", K_INT, OFF(keepalives_count), 0, 1000, NULL},
    {"tcp_user_timeout", K_DUR, OFF(tcp_user_timeout_ms), 0, INT32_MAX, NULL},
    {"application_name", K_LABEL, OFF(application_name), 0, 0, NULL},
    {"max_size", K_INT, OFF(max_size), 1, 100000, NULL},
    {"min_idle", K_INT, OFF(min_idle), 0, 100000, NULL},
    {"max_lifetime", K_DUR, OFF(max_lifetime_ms), 0, DURMAX, NULL},
    {"acquire_timeout", K_DUR, OFF(acquire_timeout_ms), 0, DURMAX, NULL},
};
#define NDEFS (sizeof defs / sizeof defs[0])

void pgs_options_defaults(pgspout_options *o)
{
    memset(o, 0, sizeof *o);
    o->chunk_rows = 1000;
    o->chunk_bytes = INT64_C(1) << 20;
    o->chunk_rows_min = 100;
    o->chunk_rows_max = 100000;
    o->max_memory = INT64_C(64) << 20;
    o->memory_warn = 0.8;
    o->memory_fail = 1.0;
    o->on_pause_timeout_cancel = 0;
    strcpy(o->label, "default");
    o->metrics = 1;
    o->idle_timeout_ms = 60000;
    o->pool = 1;
    o->cancel_timeout_ms = PGS_CANCEL_TIMEOUT_MS;
    o->connect_timeout_ms = -1;
    o->keepalives_idle_ms = -1;
    o->keepalives_interval_ms = -1;
    o->keepalives_count = -1;
    o->tcp_user_timeout_ms = -1;
    o->max_size = PGS_POOL_MAX_SIZE;
    o->max_lifetime_ms = PGS_POOL_MAX_LIFETIME_MS;
    o->acquire_timeout_ms = PGS_POOL_ACQUIRE_TIMEOUT_MS;
}

pgspout_options *pgspout_options_new(void)
{
    pgspout_options *o = malloc(sizeof *o);
    if (o)
        pgs_options_defaults(o);
    return o;
}

void pgspout_options_free(pgspout_options *o) { free(o); }

const char *pgspout_options_error(const pgspout_options *o) { return o ? o->err : ""; }

/* A non-negative decimal "12" or "1.5", exactly: the integer part and the
 * fraction are kept apart so whole numbers up to INT64_MAX parse without
 * rounding, and fractions are a correctly rounded mantissa / 10^k. *end is
 * left at the first other character (after spaces). */
typedef struct decimal {
    int64_t whole;
    double frac; /* in [0, 1) */
    int has_frac;
    int positive; /* any non-zero digit, even past double precision */
} decimal;

static int parse_decimal(const char *s, decimal *d, const char **end)
{
    static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *p = s;
    int digits = 0;
    d->whole = 0;
    d->frac = 0;
    d->has_frac = 0;
    d->positive = 0;
    if (*p == '+')
        p++;
    while (isdigit((unsigned char)*p)) {
        int v = *p++ - '0';
        if (d->whole > (INT64_MAX - v) / 10)
            return -1;
        d->whole = d->whole * 10 + v;
        d->positive |= v != 0;
        digits++;
    }
    if (*p == '.') {
        int64_t mant = 0;
        int k = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            d->positive |= *p != '0';
            if (k < 15) { /* further digits are below double precision here */
                mant = mant * 10 + (*p - '0');
                k++;
            }
            p++;
            digits++;
        }
        d->frac = (double)mant / pow10[k];
        d->has_frac = 1;
    }
    if (!digits)
        return -1;
    while (*p == ' ')
        p++;
    *end = p;
    return 0;
}

static int parse_number(const char *s, double *out, const char **end)
{
    decimal d;
    if (parse_decimal(s, &d, end) != 0)
        return -1;
    *out = (double)d.whole + d.frac;
    return 0;
}

static int parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    int64_t v = 0;
    if (*p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p)) {
        int d = *p++ - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*p)
        return -1;
    *out = v;
    return 0;
}

/* d times mult, exactly for whole numbers; -1 on overflow. */
static int scaled(const decimal *d, int64_t mult, int64_t *out)
{
    if (d->whole > INT64_MAX / mult)
        return -1;
    int64_t v = d->whole * mult;
    double f = d->frac * (double)mult;
    if ((double)(INT64_MAX - v) < f)
        return -1;
    *out = v + (int64_t)llround(f);
    return 0;
}

int pgs_parse_size(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"kB", 1024},
                 {"KB", 1024},
                 {"K", 1024},
                 {"MB", INT64_C(1) << 20},
                 {"M", INT64_C(1) << 20},
                 {"GB", INT64_C(1) << 30},
                 {"G", INT64_C(1) << 30},
                 {"TB", INT64_C(1) << 40},
                 {"T", INT64_C(1) << 40}};
    decimal d;
    const char *end;
    if (s == NULL || parse_decimal(s, &d, &end) != 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0)
            return scaled(&d, units[i].mult, out);
    return -1;
}

int pgs_parse_duration_ms(const char *s, int64_t *out)
{
    decimal d;
    const char *end;
    if (s == NULL || parse_decimal(s, &d, &end) != 0)
        return -1;
    if (strcmp(end, "us") == 0) { /* rounded up to whole milliseconds */
        int64_t us;
        if (scaled(&d, 1, &us) != 0)
            return -1;
        *out = us / 1000 + (us % 1000 != 0);
        if (*out == 0 && d.positive) /* "0.2us" is not "no limit" */
            *out = 1;
        return 0;
    }
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1000},     {"ms", 1},      {"s", 1000},    {"sec", 1000},
                 {"min", 60000}, {"h", 3600000}, {"d", 86400000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0) {
            if (scaled(&d, units[i].ms, out) != 0)
                return -1;
            if (*out == 0 && d.positive) /* "0.1ms" is not "no limit" */
                *out = 1;
            return 0;
        }
    return -1;
}

int pgs_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    if (s == NULL)
        return -1;
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

static int enum_index(const char *choices, const char *s)
{
    size_t n = strlen(s);
    int i = 0;
    for (const char *c = choices; *c; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, s, n) == 0)
            return i;
        c += len + (bar ? 1 : 0);
    }
    return -1;
}

static int valid_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PGS_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.:-", s[i]))
            return 0;
    return 1;
}

/* A snapshot id as pg_export_snapshot() writes it: hex digits and dashes
 * (it is sent as a literal, SET TRANSACTION SNAPSHOT taking no parameter:
 * nothing else may reach the SQL). "" unsets. */
static int valid_snapshot(const char *s)
{
    size_t n = strlen(s);
    if (n > PGS_SNAPSHOT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) && s[i] != '-')
            return 0;
    return 1;
}

static size_t field_size(const opt_def *d)
{
    switch (d->kind) {
    case K_FRAC:
    case K_RATE: return sizeof(double);
    case K_BOOL:
    case K_ENUM: return sizeof(int);
    case K_LABEL: return PGS_LABEL_MAX + 1;
    case K_SNAPSHOT: return PGS_SNAPSHOT_MAX + 1;
    default: return sizeof(int64_t);
    }
}

/* The shortest %g rendering that parses back to v. */
static void put_double(char *out, size_t n, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, n, "%.*f", prec, v);
        /* trim trailing zeros: "0.500000000000000" -> "0.5" */
        char *dot = strchr(out, '.');
        if (dot) {
            char *e = out + strlen(out) - 1;
            while (e > dot && *e == '0')
                *e-- = '\0';
            if (e == dot)
                *e = '\0';
        }
        double back;
        const char *end;
        if (parse_number(out, &back, &end) == 0 && !*end && back == v)
            return;
    }
}

static const opt_def *find_def(const char *key)
{
    for (size_t i = 0; i < NDEFS; i++)
        if (strcmp(defs[i].key, key) == 0)
            return &defs[i];
    return NULL;
}

static int set_error(pgspout_options *o, int code, const char *key, const char *value,
                     const char *why)
{
    snprintf(o->err, sizeof o->err, "option %s: %s%.64s%s%s", key,
             code == PGSPOUT_EOPTION ? "" : "bad value \"", code == PGSPOUT_EOPTION ? "" : value,
             code == PGSPOUT_EOPTION ? "" : "\": ", why);
    return code;
}

int pgspout_options_set(pgspout_options *o, const char *key, const char *value)
{
    if (o == NULL)
        return PGSPOUT_EINVAL;
    if (key == NULL || value == NULL) {
        snprintf(o->err, sizeof o->err, "option key and value must not be NULL");
        return PGSPOUT_EINVAL;
    }
    const opt_def *d = find_def(key);
    if (d == NULL) {
        snprintf(o->err, sizeof o->err, "unknown option \"%.64s\"", key);
        return PGSPOUT_EOPTION;
    }
    char *field = (char *)o + d->off;
    if (strcmp(value, "default") == 0) { /* back to the default (unset) */
        pgspout_options def;
        pgs_options_defaults(&def);
        memcpy(field, (const char *)&def + d->off, field_size(d));
        o->err[0] = '\0';
        return PGSPOUT_OK;
    }
    int64_t i64 = 0;
    double dbl;
    const char *end;
    switch (d->kind) {
    case K_INT:
        if (parse_int(value, &i64) != 0)
            return set_error(o, PGSPOUT_EVALUE, key, value, "expected a whole number");
        break;
    case K_SIZE:
        if (pgs_parse_size(value, &i64) != 0)
            return set_error(o, PGSPOUT_EVALUE, key, value,
                             "expected a size such as 65536, 64kB, 64MB or 1GB");
        break;
    case K_DUR:
        if (pgs_parse_duration_ms(value, &i64) != 0)
            return set_error(o, PGSPOUT_EVALUE, key, value,
                             "expected a duration such as 250ms, 30s, 5min or 1h");
        break;
    case K_FRAC:
        if (parse_number(value, &dbl, &end) != 0 || *end || dbl <= 0 || dbl > 1)
            return set_error(o, PGSPOUT_EVALUE, key, value, "expected a fraction in (0, 1]");
        memcpy(field, &dbl, sizeof dbl);
        o->err[0] = '\0';
        return PGSPOUT_OK;
    case K_RATE:
        if (parse_number(value, &dbl, &end) != 0 || (*end && strcmp(end, "/s") != 0) || dbl > 1e12)
            return set_error(o, PGSPOUT_EVALUE, key, value, "expected rows per second, e.g. 5000");
        memcpy(field, &dbl, sizeof dbl);
        o->err[0] = '\0';
        return PGSPOUT_OK;
    case K_BOOL: {
        int b;
        if (pgs_parse_bool(value, &b) != 0)
            return set_error(o, PGSPOUT_EVALUE, key, value, "expected on/off, true/false or 1/0");
        *(int *)field = b;
        o->err[0] = '\0';
        return PGSPOUT_OK;
    }
    case K_ENUM: {
        int idx = enum_index(d->choices, value);
        if (idx < 0) {
            char why[64];
            snprintf(why, sizeof why, "expected one of %s", d->choices);
            return set_error(o, PGSPOUT_EVALUE, key, value, why);
        }
        *(int *)field = idx;
        o->err[0] = '\0';
        return PGSPOUT_OK;
    }
    case K_LABEL:
        if (!valid_label(value))
            return set_error(o, PGSPOUT_EVALUE, key, value,
                             "expected 1-64 characters of [A-Za-z0-9_.:-]");
        strcpy(field, value);
        o->err[0] = '\0';
        return PGSPOUT_OK;
    case K_SNAPSHOT:
        if (!valid_snapshot(value))
            return set_error(o, PGSPOUT_EVALUE, key, value,
                             "expected a snapshot id from pg_export_snapshot() (hex digits and "
                             "dashes, at most 64), or \"\" for none");
        strcpy(field, value);
        o->err[0] = '\0';
        return PGSPOUT_OK;
    }
    if (i64 < d->min || i64 > d->max) {
        char why[96];
        snprintf(why, sizeof why, "out of range [%lld, %lld]", (long long)d->min,
                 (long long)d->max);
        return set_error(o, PGSPOUT_EVALUE, key, value, why);
    }
    *(int64_t *)field = i64;
    o->err[0] = '\0';
    return PGSPOUT_OK;
}

const char *pgspout_options_get(const pgspout_options *o, const char *key)
{
    static _Thread_local char out[PGS_LABEL_MAX + 32];
    if (o == NULL || key == NULL)
        return NULL;
    const opt_def *d = find_def(key);
    if (d == NULL)
        return NULL;
    const char *field = (const char *)o + d->off;
    switch (d->kind) {
    case K_INT:
    case K_SIZE:
    case K_DUR: {
        int64_t v = *(const int64_t *)field;
        if (v < 0) /* a connection key left to libpq */
            snprintf(out, sizeof out, "default");
        else
            snprintf(out, sizeof out, "%lld%s", (long long)v, d->kind == K_DUR ? "ms" : "");
        break;
    }
    case K_FRAC:
    case K_RATE: put_double(out, sizeof out, *(const double *)field); break;
    case K_BOOL: snprintf(out, sizeof out, "%s", *(const int *)field ? "on" : "off"); break;
    case K_ENUM: {
        int idx = *(const int *)field;
        const char *c = d->choices;
        for (int i = 0; i < idx && c; i++) {
            c = strchr(c, '|');
            if (c)
                c++;
        }
        const char *bar = c ? strchr(c, '|') : NULL;
        snprintf(out, sizeof out, "%.*s", c ? (int)(bar ? bar - c : (long)strlen(c)) : 0,
                 c ? c : "");
        break;
    }
    case K_LABEL: snprintf(out, sizeof out, "%s", *field ? field : "default"); break;
    case K_SNAPSHOT: snprintf(out, sizeof out, "%s", field); break;
    }
    return out;
}

int pgspout_options_set_filter(pgspout_options *o, pgspout_filter_fn fn, void *userdata)
{
    if (o == NULL)
        return PGSPOUT_EINVAL;
    o->filter = fn;
    o->filter_ud = userdata;
    return PGSPOUT_OK;
}

int pgspout_options_set_progress(pgspout_options *o, pgspout_progress_fn fn, void *userdata)
{
    if (o == NULL)
        return PGSPOUT_EINVAL;
    o->progress = fn;
    o->progress_ud = userdata;
    return PGSPOUT_OK;
}
