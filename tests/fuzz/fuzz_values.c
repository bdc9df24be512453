/* fuzz_values.c - the text-value parsers (core/src/values.c) on arbitrary
 * bytes: none reads past len or crashes, a refused value leaves the output
 * untouched, and what they accept is right:
 *   - float8: the same bits as glibc's strtod of the same text (correctly
 *     rounded both), for the decimal forms strtod reads whole;
 *   - int8: the same value as strtoll, refused exactly when out of range;
 *   - bytea: never more bytes than cap, and hex decodes to (len - 2) / 2;
 *   - datetime and interval: fields in their documented ranges.
 * Input: byte 0 picks the parser, the rest is the value (not NUL-terminated:
 * the parsers must honour len). */
#include "pgspout.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_values: check failed: %s (line %d)\n", #cond, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Decimal text strtod reads whole, as PostgreSQL prints floats. */
static int plain_decimal(const char *v, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (v[i] == '-' || v[i] == '+'))
        i++;
    for (; i < n && ((v[i] >= '0' && v[i] <= '9') || v[i] == '.'); i++)
        digits += v[i] != '.';
    return digits > 0 && n < 400;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % 6;
    size_t n = size - 1;
    char *v = malloc(n + 1); /* exactly n bytes are the value; one more for strtod */
    CHECK(v != NULL);
    memcpy(v, data + 1, n);
    v[n] = '\0';
    switch (which) {
    case 0: {
        double d = 12345.0;
        int rc = pgspout_parse_float8(v, n, &d);
        if (rc != PGSPOUT_OK)
            CHECK(d == 12345.0);
        else if (plain_decimal(v, n) && memchr(v, '\0', n) == NULL) {
            char *end;
            double want = strtod(v, &end);
            if (end == v + n)
                CHECK(memcmp(&d, &want, sizeof d) == 0);
        }
        break;
    }
    case 1: {
        int64_t x = 7;
        int rc = pgspout_parse_int8(v, n, &x);
        size_t sign = n > 0 && (v[0] == '-' || v[0] == '+');
        size_t ndigits = strspn(v + sign, "0123456789");
        if (rc != PGSPOUT_OK)
            CHECK(x == 7);
        if (ndigits > 0 && sign + ndigits == n) { /* [sign]digits, nothing else */
            errno = 0;
            long long want = strtoll(v, NULL, 10);
            if (errno == ERANGE)
                CHECK(rc != PGSPOUT_OK);
            else if (ndigits <= 19)
                CHECK(rc == PGSPOUT_OK && x == want);
            else /* leading zeros past 19 digits: refused, or read right */
                CHECK(rc != PGSPOUT_OK || x == want);
        } else {
            CHECK(rc != PGSPOUT_OK);
        }
        break;
    }
    case 2: {
        unsigned char out[64];
        size_t cap = n < sizeof out ? n : sizeof out, got = 0;
        if (pgspout_parse_bytea(v, n, out, cap, &got) == PGSPOUT_OK) {
            CHECK(got <= cap);
            if (n >= 2 && v[0] == '\\' && v[1] == 'x')
                CHECK(got == (n - 2) / 2);
        }
        break;
    }
    case 3: {
        unsigned char u[16];
        (void)pgspout_parse_uuid(v, n, u);
        break;
    }
    case 4: {
        pgspout_datetime t;
        int kind = PGSPOUT_KIND_DATE + (n ? (unsigned char)v[0] % 5 : 0);
        if (pgspout_parse_datetime(v, n, kind, &t) == PGSPOUT_OK && !t.infinity) {
            CHECK(t.hour >= 0 && t.hour <= 24 && t.minute >= 0 && t.minute <= 59);
            CHECK(t.second >= 0 && t.second <= 60 && t.usec >= 0 && t.usec <= 999999);
            if (kind == PGSPOUT_KIND_DATE || kind >= PGSPOUT_KIND_TIMESTAMP)
                CHECK(t.month >= 1 && t.month <= 12 && t.day >= 1 && t.day <= 31);
        }
        break;
    }
    default: {
        pgspout_interval iv;
        (void)pgspout_parse_interval(v, n, &iv);
        break;
    }
    }
    free(v);
    return 0;
}
