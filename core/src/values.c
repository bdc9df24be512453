/* values.c - text-format values (what PostgreSQL sends and pgspout_row_value
 * returns) to C values: int8, correctly rounded doubles, dates and times,
 * intervals, uuids and bytea. One parser for C callers and for every
 * binding's converters. No allocation, no locale, any thread. */
#include "pgspout.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int is_word(const char *v, size_t len, const char *w)
{
    return len == strlen(w) && memcmp(v, w, len) == 0;
}

static int digit(char c) { return (unsigned)(c - '0') <= 9 ? c - '0' : -1; }

/* Hex digit values plus one (0: not a hex digit): a table, because uuids
 * and bytea mix letters and digits at random and branches on them
 * mispredict. */
#define HEX_09(b) [b] = b - '0' + 1
#define HEX_AF(b) [b] = b - 'A' + 11, [b + 32] = b - 'A' + 11
static const signed char hex_table[256] = {HEX_09('0'), HEX_09('1'), HEX_09('2'), HEX_09('3'),
                                           HEX_09('4'), HEX_09('5'), HEX_09('6'), HEX_09('7'),
                                           HEX_09('8'), HEX_09('9'), HEX_AF('A'), HEX_AF('B'),
                                           HEX_AF('C'), HEX_AF('D'), HEX_AF('E'), HEX_AF('F')};

static int hexval(char c) { return hex_table[(unsigned char)c] - 1; }

/* ---------------------------------------------------------------- int8 */

int pgspout_parse_int8(const char *v, size_t len, int64_t *out)
{
    uint64_t mag = 0;
    size_t i = 0;
    int neg = 0;
    if (v == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    if (len > 0 && (v[0] == '-' || v[0] == '+'))
        neg = v[i++] == '-';
    if (i == len || len - i > 19)
        return PGSPOUT_EINVAL;
    for (; i < len; i++) { /* 19 digits never overflow 64 bits */
        int d = digit(v[i]);
        if (d < 0)
            return PGSPOUT_EINVAL;
        mag = mag * 10 + (uint64_t)d;
    }
    if (mag > (uint64_t)INT64_MAX + (uint64_t)neg)
        return PGSPOUT_EINVAL;
    *out = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
    return PGSPOUT_OK;
}

/* -------------------------------------------------------------- float8 */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static uint64_t pow10_u64(int e)
{
    uint64_t p = 1;
    while (e-- > 0)
        p *= 10;
    return p;
}

/* w * 10^e10 (w < 10^19, w > 0, |e10| <= 19) rounded once to the nearest
 * double, ties to even: the product or quotient is computed in 128 bits, so
 * this is exact where strtod would take its slow multi-precision path. */
static double scaled(uint64_t w, int e10)
{
    __extension__ typedef unsigned __int128 u128;
    u128 q;
    int shift = 0, sticky = 0;
    if (e10 >= 0) {
        q = (u128)w * pow10_u64(e10);
    } else { /* w at the top of 128 bits, so the quotient keeps >= 64 bits */
        shift = 64 + __builtin_clzll(w);
        u128 n = (u128)w << shift;
        uint64_t d = pow10_u64(-e10);
        q = n / d;
        sticky = n % d != 0;
    }
    uint64_t hi = (uint64_t)(q >> 64);
    int bits = hi ? 128 - __builtin_clzll(hi) : 64 - __builtin_clzll((uint64_t)q);
    int drop = bits > 53 ? bits - 53 : 0;
    uint64_t mant = (uint64_t)(q >> drop);
    if (drop > 0) {
        u128 rest = q & (((u128)1 << drop) - 1), half = (u128)1 << (drop - 1);
        mant += rest > half || (rest == half && (sticky || (mant & 1)));
    }
    return ldexp((double)mant, drop - shift); /* exact: mant <= 2^53, normal */
}

int pgspout_parse_float8(const char *v, size_t len, double *out)
{
    const char *p = v, *e = v + len;
    uint64_t w = 0;
    int neg = 0, digits = 0, seen = 0, e10 = 0, ev = 0, eneg = 0;
    if (v == NULL || out == NULL)
        return PGSPOUT_EINVAL;
    if (len == 3 && memcmp(v, "NaN", 3) == 0) {
        *out = NAN;
        return PGSPOUT_OK;
    }
    if (p < e && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    if (p < e && *p == 'I' && is_word(p, (size_t)(e - p), "Infinity")) {
        *out = neg ? -HUGE_VAL : HUGE_VAL;
        return PGSPOUT_OK;
    }
    for (int frac = 0;; p++) {
        if (p < e && *p == '.' && !frac) {
            frac = 1;
            continue;
        }
        if (p == e || digit(*p) < 0)
            break;
        seen = 1;
        if (w == 0 && *p == '0') {
            e10 -= frac; /* leading zeros are not significant */
            continue;
        }
        if (++digits <= 19) { /* more go to strtod below */
            w = w * 10 + (uint64_t)(*p - '0');
            e10 -= frac;
        }
    }
    if (!seen)
        return PGSPOUT_EINVAL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        if (++p < e && (*p == '-' || *p == '+'))
            eneg = *p++ == '-';
        if (p == e)
            return PGSPOUT_EINVAL;
        for (; p < e && digit(*p) >= 0; p++)
            ev = ev < 100000 ? ev * 10 + (*p - '0') : ev;
        e10 += eneg ? -ev : ev;
    }
    if (p != e)
        return PGSPOUT_EINVAL;
    if (w == 0) {
        *out = neg ? -0.0 : 0.0;
        return PGSPOUT_OK;
    }
    if (digits <= 15 && e10 >= -22 && e10 <= 22) {
        /* Clinger: w and 10^|e10| are exact doubles, so one correctly
         * rounded multiplication or division gives the nearest double */
        static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        double d = e10 < 0 ? (double)w / p10[-e10] : (double)w * p10[e10];
        *out = neg ? -d : d;
        return PGSPOUT_OK;
    }
    if (digits <= 19 && e10 >= -19 && e10 <= 19) {
        *out = neg ? -scaled(w, e10) : scaled(w, e10);
        return PGSPOUT_OK;
    }
    /* More digits or a larger exponent than the fast path takes: glibc's
     * strtod rounds correctly too, on a NUL-terminated copy in "C". */
    char buf[512];
    if (len >= sizeof buf)
        return PGSPOUT_EINVAL;
    memcpy(buf, v, len);
    buf[len] = '\0';
    pthread_once(&c_locale_once, c_locale_init);
    *out = c_locale ? strtod_l(buf, NULL, c_locale) : strtod(buf, NULL);
    return PGSPOUT_OK;
}

/* ---------------------------------------------------------------- uuid */

int pgspout_parse_uuid(const char *v, size_t len, unsigned char out[16])
{
    int k = 0;
    if (v == NULL || out == NULL || len != 36)
        return PGSPOUT_EINVAL;
    for (size_t i = 0; i < 36; i += 2) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (v[i++] != '-')
                return PGSPOUT_EINVAL;
        }
        int hi = hexval(v[i]), lo = hexval(v[i + 1]);
        if (hi < 0 || lo < 0)
            return PGSPOUT_EINVAL;
        out[k++] = (unsigned char)(hi << 4 | lo);
    }
    return PGSPOUT_OK;
}

/* --------------------------------------------------------------- bytea */

int pgspout_parse_bytea(const char *v, size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    size_t k = 0;
    if (v == NULL || out == NULL || outlen == NULL)
        return PGSPOUT_EINVAL;
    if (len >= 2 && v[0] == '\\' && v[1] == 'x') { /* bytea_output = hex */
        if (len % 2 || (len - 2) / 2 > cap)
            return PGSPOUT_EINVAL;
        for (size_t i = 2; i < len; i += 2) {
            int hi = hexval(v[i]), lo = hexval(v[i + 1]);
            if (hi < 0 || lo < 0)
                return PGSPOUT_EINVAL;
            out[k++] = (unsigned char)(hi << 4 | lo);
        }
        *outlen = k;
        return PGSPOUT_OK;
    }
    /* bytea_output = escape: \\ and \ooo, every other byte itself */
    for (size_t i = 0; i < len; k++) {
        if (k == cap)
            return PGSPOUT_EINVAL;
        if (v[i] != '\\') {
            out[k] = (unsigned char)v[i++];
        } else if (i + 1 < len && v[i + 1] == '\\') {
            out[k] = '\\';
            i += 2;
        } else if (i + 3 < len && v[i + 1] >= '0' && v[i + 1] <= '3' && v[i + 2] >= '0' &&
                   v[i + 2] <= '7' && v[i + 3] >= '0' && v[i + 3] <= '7') {
            out[k] =
                (unsigned char)((v[i + 1] - '0') << 6 | (v[i + 2] - '0') << 3 | (v[i + 3] - '0'));
            i += 4;
        } else {
            return PGSPOUT_EINVAL;
        }
    }
    *outlen = k;
    return PGSPOUT_OK;
}

/* ------------------------------------------------------ dates and times */

/* k digits at *pp (before e) into *out; advances *pp. */
static int digits_at(const char **pp, const char *e, int k, int *out)
{
    int x = 0;
    if (e - *pp < k)
        return -1;
    for (int i = 0; i < k; i++) {
        int d = digit((*pp)[i]);
        if (d < 0)
            return -1;
        x = x * 10 + d;
    }
    *pp += k;
    *out = x;
    return 0;
}

static int expect(const char **pp, const char *e, char c)
{
    if (*pp == e || **pp != c)
        return -1;
    (*pp)++;
    return 0;
}

/* "[.ffffff]": microseconds, 0 without (more than 6 digits are cut). */
static int parse_frac(const char **pp, const char *e, int *us)
{
    const char *p = *pp;
    int k = 0;
    *us = 0;
    if (p == e || *p != '.')
        return 0;
    for (p++; p < e && digit(*p) >= 0; p++)
        if (k++ < 6)
            *us = *us * 10 + (*p - '0');
    for (int i = k; i < 6; i++)
        *us *= 10;
    *pp = p;
    return k > 0 ? 0 : -1;
}

/* "Y+-MM-DD": a year of four or more digits (as DateStyle ISO prints it). */
static int parse_date(const char **pp, const char *e, pgspout_datetime *dt)
{
    const char *p = *pp;
    int y = 0, k = 0;
    for (; p < e && digit(*p) >= 0 && k < 7; p++, k++)
        y = y * 10 + (*p - '0');
    if (k < 4 || expect(&p, e, '-') || digits_at(&p, e, 2, &dt->month) || expect(&p, e, '-') ||
        digits_at(&p, e, 2, &dt->day))
        return -1;
    if (dt->month < 1 || dt->month > 12 || dt->day < 1 || dt->day > 31)
        return -1;
    dt->year = y;
    *pp = p;
    return 0;
}

/* "HH:MM:SS[.ffffff]" (24:00:00 included, as PostgreSQL allows it). */
static int parse_time(const char **pp, const char *e, pgspout_datetime *dt)
{
    if (digits_at(pp, e, 2, &dt->hour) || expect(pp, e, ':') || digits_at(pp, e, 2, &dt->minute) ||
        expect(pp, e, ':') || digits_at(pp, e, 2, &dt->second) || parse_frac(pp, e, &dt->usec))
        return -1;
    return dt->hour > 24 || dt->minute > 59 || dt->second > 60 ? -1 : 0;
}

/* "+HH[:MM[:SS]]" or "-...": seconds east of UTC. */
static int parse_offset(const char **pp, const char *e, int *off)
{
    int sign, h, m = 0, s = 0;
    if (*pp == e || (**pp != '+' && **pp != '-'))
        return -1;
    sign = *(*pp)++ == '-' ? -1 : 1;
    if (digits_at(pp, e, 2, &h))
        return -1;
    if (e - *pp >= 3 && **pp == ':') {
        (*pp)++;
        if (digits_at(pp, e, 2, &m))
            return -1;
        if (e - *pp >= 3 && **pp == ':') {
            (*pp)++;
            if (digits_at(pp, e, 2, &s))
                return -1;
        }
    }
    *off = sign * (h * 3600 + m * 60 + s);
    return 0;
}

int pgspout_parse_datetime(const char *v, size_t len, int kind, pgspout_datetime *out)
{
    const char *p = v, *e = v + len;
    pgspout_datetime dt;
    int has_date = kind == PGSPOUT_KIND_DATE || kind == PGSPOUT_KIND_TIMESTAMP ||
                   kind == PGSPOUT_KIND_TIMESTAMPTZ;
    int has_time = kind != PGSPOUT_KIND_DATE;
    int has_tz = kind == PGSPOUT_KIND_TIMETZ || kind == PGSPOUT_KIND_TIMESTAMPTZ;
    if (v == NULL || out == NULL || kind < PGSPOUT_KIND_DATE || kind > PGSPOUT_KIND_TIMESTAMPTZ)
        return PGSPOUT_EINVAL;
    memset(&dt, 0, sizeof dt);
    if (has_date && (is_word(v, len, "infinity") || is_word(v, len, "-infinity"))) {
        dt.infinity = v[0] == '-' ? -1 : 1;
        *out = dt;
        return PGSPOUT_OK;
    }
    if (has_date && (parse_date(&p, e, &dt) || (has_time && expect(&p, e, ' '))))
        return PGSPOUT_EINVAL;
    if (has_time && parse_time(&p, e, &dt))
        return PGSPOUT_EINVAL;
    if (has_tz && parse_offset(&p, e, &dt.utc_offset))
        return PGSPOUT_EINVAL;
    if (has_date && e - p == 3 && memcmp(p, " BC", 3) == 0) {
        dt.year = 1 - dt.year; /* astronomical numbering: 1 BC is year 0 */
        p = e;
    }
    if (p != e)
        return PGSPOUT_EINVAL;
    *out = dt;
    return PGSPOUT_OK;
}

/* ------------------------------------------------------------- interval */

/* IntervalStyle postgres: "1 year 2 mons -3 days +04:05:06.5". */
int pgspout_parse_interval(const char *v, size_t len, pgspout_interval *out)
{
    const char *p = v, *e = v + len;
    int64_t months = 0, days = 0, usec = 0;
    const int64_t lim = INT64_C(1) << 40;
    if (v == NULL || out == NULL || len == 0)
        return PGSPOUT_EINVAL;
    while (p < e) {
        if (*p == ' ') {
            p++;
            continue;
        }
        int neg = 0;
        if (*p == '-' || *p == '+')
            neg = *p++ == '-';
        const char *start = p;
        int64_t num = 0;
        for (; p < e && digit(*p) >= 0; p++)
            if ((num = num * 10 + (*p - '0')) > lim)
                return PGSPOUT_EINVAL;
        if (p == start)
            return PGSPOUT_EINVAL;
        if (p < e && *p == ':') { /* H+:MM:SS[.ffffff] */
            int mi, s, us;
            p++;
            if (num > INT64_C(2562047788) || digits_at(&p, e, 2, &mi) || expect(&p, e, ':') ||
                digits_at(&p, e, 2, &s) || parse_frac(&p, e, &us) || mi > 59 || s > 59)
                return PGSPOUT_EINVAL;
            int64_t t = ((num * 60 + mi) * 60 + s) * INT64_C(1000000) + us;
            usec += neg ? -t : t;
            continue;
        }
        if (expect(&p, e, ' '))
            return PGSPOUT_EINVAL;
        const char *w = p;
        while (p < e && *p >= 'a' && *p <= 'z')
            p++;
        size_t wl = (size_t)(p - w);
        int64_t n = neg ? -num : num;
        if (is_word(w, wl, "year") || is_word(w, wl, "years"))
            months += 12 * n;
        else if (is_word(w, wl, "mon") || is_word(w, wl, "mons"))
            months += n;
        else if (is_word(w, wl, "day") || is_word(w, wl, "days"))
            days += n;
        else
            return PGSPOUT_EINVAL;
    }
    if (months > INT32_MAX || months < INT32_MIN || days > INT32_MAX || days < INT32_MIN)
        return PGSPOUT_EINVAL;
    out->months = (int32_t)months;
    out->days = (int32_t)days;
    out->usec = usec;
    return PGSPOUT_OK;
}
