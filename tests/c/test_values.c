/* test_values.c - the text-value parsers (pgspout_parse_*): every one
 * against what the server itself computes for many generated values (the
 * binary send functions, epoch microseconds, interval fields), the double
 * parser also against glibc's correctly rounded strtod on random and hard
 * decimals, and the forms each must refuse. Needs PGSPOUT_TEST_DSN. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static pgspout_stream *open_ok(pgspout_conn *c, const char *sql)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("open %s: %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    return s;
}

static uint64_t bits_of(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double parsed(const char *text)
{
    double d = -12345.0;
    if (pgspout_parse_float8(text, strlen(text), &d) != PGSPOUT_OK)
        fail_msg("parse_float8 refused \"%s\"", text);
    return d;
}

/* Same bits as strtod (glibc rounds correctly), for text strtod reads whole. */
static void same_as_strtod(const char *text)
{
    double want = strtod(text, NULL), got = parsed(text);
    if (bits_of(got) != bits_of(want))
        fail_msg("\"%s\": got %.17g (%016llx), strtod %.17g (%016llx)", text, got,
                 (unsigned long long)bits_of(got), want, (unsigned long long)bits_of(want));
}

static uint64_t rnd(uint64_t *state) /* xorshift64* */
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * UINT64_C(2685821657736338717);
}

static void test_float8_random_and_hard(void **state)
{
    (void)state;
    static const char *const hard[] = {
        "0.1",
        "0.3",
        "1e23",
        "9007199254740993",
        "9007199254740995",
        "2.2250738585072011e-308",
        "2.2250738585072014e-308",
        "4.9406564584124654e-324",
        "1.7976931348623157e308",
        "8.988465674311580536566680e307",
        "123456789012345678",
        "1234567890123456789",
        "12345678901234567890123",
        "0.000000000000000000001",
        "-0.0",
        "+1.5",
        "7e-19",
        "9999999999999999999e19",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "0.30000000000000004",
        "3.4028234663852886e+38",
        "1.401298464324817e-45",
        "00000000000000000000001.5",
    };
    for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++)
        same_as_strtod(hard[i]);
    uint64_t st = 0x9E3779B97F4A7C15u;
    char buf[64];
    for (long i = 0, n = tu_scaled(400000, 20000); i < n; i++) {
        double d;
        uint64_t b = rnd(&st);
        memcpy(&d, &b, sizeof d);
        if (!isfinite(d))
            continue;
        /* what PostgreSQL prints: the shortest text that reads back */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        same_as_strtod(buf);
        snprintf(buf, sizeof buf, "%.17e", d);
        same_as_strtod(buf);
        /* decimals of up to 19 digits near halfway points, small exponents */
        snprintf(buf, sizeof buf, "%llu%se%d",
                 (unsigned long long)(rnd(&st) % UINT64_C(10000000000000000000)), i % 3 ? "5" : "",
                 (int)(rnd(&st) % 60) - 30);
        same_as_strtod(buf);
        /* 1-15 digits with a point somewhere (prices, measurements) */
        uint64_t p10 = 1;
        for (int k = (int)(rnd(&st) % 15); k >= 0; k--)
            p10 *= 10;
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)(rnd(&st) % p10));
        size_t len = strlen(buf), at = (size_t)(rnd(&st) % (len + 1));
        memmove(buf + at + 1, buf + at, len - at + 1);
        buf[at] = '.';
        if (len > 0) /* "." alone is not a number */
            same_as_strtod(buf);
        snprintf(buf + len + 1, sizeof buf - len - 1, "e%d", (int)(rnd(&st) % 50) - 25);
        if (len > 0)
            same_as_strtod(buf);
    }
}

static void test_float8_words_and_refusals(void **state)
{
    (void)state;
    double d = 7.0;
    assert_true(isnan(parsed("NaN")));
    assert_true(parsed("Infinity") == HUGE_VAL);
    assert_true(parsed("-Infinity") == -HUGE_VAL);
    assert_true(signbit(parsed("-0")));
    static const char *const bad[] = {"",      " 1",  "1 ",  "0x10", "1e", "1e+", ".",        "-",
                                      "1.2.3", "nan", "inf", "1,5",  "e5", "--1", "Infinityx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (pgspout_parse_float8(bad[i], strlen(bad[i]), &d) != PGSPOUT_EINVAL)
            fail_msg("parse_float8 accepted \"%s\"", bad[i]);
        assert_true(d == 7.0); /* untouched */
    }
    /* exactly len bytes: what follows is not read */
    assert_int_equal(pgspout_parse_float8("2.5junk", 3, &d), PGSPOUT_OK);
    assert_true(d == 2.5);
    assert_int_equal(pgspout_parse_float8(NULL, 0, &d), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_parse_float8("1", 1, NULL), PGSPOUT_EINVAL);
}

static void test_int8(void **state)
{
    (void)state;
    int64_t x = 5;
    static const struct {
        const char *text;
        int64_t want;
    } good[] = {{"0", 0},
                {"-0", 0},
                {"+42", 42},
                {"-2147483648", INT32_MIN},
                {"9223372036854775807", INT64_MAX},
                {"-9223372036854775808", INT64_MIN},
                {"0009", 9}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(pgspout_parse_int8(good[i].text, strlen(good[i].text), &x), PGSPOUT_OK);
        assert_true(x == good[i].want);
    }
    static const char *const bad[] = {"",     "-",  "9223372036854775808",  "-9223372036854775809",
                                      "1.0",  " 1", "99999999999999999999", "1e3",
                                      "0x1f", "12a"};
    x = 5;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (pgspout_parse_int8(bad[i], strlen(bad[i]), &x) != PGSPOUT_EINVAL)
            fail_msg("parse_int8 accepted \"%s\"", bad[i]);
        assert_true(x == 5);
    }
}

/* Hex text (2 digits per byte) to bytes; returns the count. */
static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return n;
}

/* float8 text (shortest, as the server prints it by default) against the
 * server's own bits (float8send), over many magnitudes. */
static void test_float8_against_server(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s =
        open_ok(c, "SELECT v::text, encode(float8send(v), 'hex') FROM (SELECT (random() - 0.5) * "
                   "10 ^ (random() * 600 - 300) AS v FROM generate_series(1, 100000) UNION ALL "
                   "SELECT unnest('{0,-0,NaN,Infinity,-Infinity,5e-324,1.7976931348623157e308,"
                   "0.1,1e23,2.2250738585072014e-308}'::float8[])) t");
    const pgspout_row *r;
    int rc;
    long n = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        size_t len;
        const char *v = pgspout_row_value(r, 0, &len);
        unsigned char be[8];
        uint64_t want = 0;
        double d;
        unhex(pgspout_row_value(r, 1, NULL), be);
        for (int i = 0; i < 8; i++)
            want = want << 8 | be[i];
        assert_int_equal(pgspout_parse_float8(v, len, &d), PGSPOUT_OK);
        if (isnan(d) ? (want & UINT64_C(0x7ff0000000000000)) != UINT64_C(0x7ff0000000000000)
                     : bits_of(d) != want)
            fail_msg("\"%s\": got %016llx, server %016llx", v, (unsigned long long)bits_of(d),
                     (unsigned long long)want);
        n++;
    }
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
    assert_int_equal(n, 100010);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
}

static void test_uuid_and_bytea_against_server(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s =
        open_ok(c, "SELECT u::text, encode(uuid_send(u), 'hex'), b, encode(b, 'hex'), "
                   "encode(b, 'escape') FROM (SELECT md5(g::text)::uuid AS u, "
                   "decode(repeat(md5(g::text), g % 7), 'hex') || '\\x005c27ff'::bytea AS b "
                   "FROM generate_series(1, 5000) g) t");
    const pgspout_row *r;
    int rc;
    long n = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        size_t len, blen, elen, got_len = 0;
        unsigned char u[16], want[16], buf[256], wantb[256];
        const char *v = pgspout_row_value(r, 0, &len);
        assert_int_equal(pgspout_parse_uuid(v, len, u), PGSPOUT_OK);
        unhex(pgspout_row_value(r, 1, NULL), want);
        assert_memory_equal(u, want, 16);
        const char *b = pgspout_row_value(r, 2, &blen); /* bytea_output = hex */
        size_t wn = unhex(pgspout_row_value(r, 3, NULL), wantb);
        assert_int_equal(pgspout_parse_bytea(b, blen, buf, sizeof buf, &got_len), PGSPOUT_OK);
        assert_int_equal(got_len, wn);
        assert_memory_equal(buf, wantb, wn);
        const char *esc = pgspout_row_value(r, 4, &elen); /* the escape format */
        assert_int_equal(pgspout_parse_bytea(esc, elen, buf, sizeof buf, &got_len), PGSPOUT_OK);
        assert_int_equal(got_len, wn);
        assert_memory_equal(buf, wantb, wn);
        assert_int_equal(pgspout_parse_bytea(b, blen, buf, wn - 1, &got_len), PGSPOUT_EINVAL);
        n++;
    }
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
    assert_int_equal(n, 5000);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
    unsigned char out[16];
    size_t k;
    static const char *const bad_uuid[] = {"", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
                                           "a0eebc999c0b4ef8bb6d6bb9bd380a11",
                                           "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g"};
    for (size_t i = 0; i < sizeof bad_uuid / sizeof bad_uuid[0]; i++)
        assert_int_equal(pgspout_parse_uuid(bad_uuid[i], strlen(bad_uuid[i]), out), PGSPOUT_EINVAL);
    static const char *const bad_bytea[] = {"\\x0", "\\x0g", "\\", "a\\9", "\\40"};
    for (size_t i = 0; i < sizeof bad_bytea / sizeof bad_bytea[0]; i++)
        assert_int_equal(pgspout_parse_bytea(bad_bytea[i], strlen(bad_bytea[i]), out, 16, &k),
                         PGSPOUT_EINVAL);
}

/* Days from 1970-01-01 to a proleptic Gregorian date (astronomical year). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t epoch_us(const pgspout_datetime *t)
{
    int64_t days = t->month ? days_from_civil(t->year, t->month, t->day) : 0; /* 0: a time */
    int64_t secs = days * 86400 + t->hour * 3600 + t->minute * 60 + t->second - t->utc_offset;
    return secs * 1000000 + t->usec;
}

/* Each kind's text against the server's epoch microseconds (extract(epoch)
 * is exact numeric since PostgreSQL 14), in a zone whose offsets have had
 * seconds (Amsterdam before 1937), over BC and AD years. */
static void test_datetime_against_server(void **state)
{
    (void)state;
    static const struct {
        int kind;
        const char *expr;  /* of x, a random timestamptz */
        const char *epoch; /* the server's microseconds for column v */
    } cases[] = {
        {PGSPOUT_KIND_TIMESTAMPTZ, "x",
         "CASE WHEN isfinite(v) THEN (extract(epoch FROM v) * 1000000)::int8 END"},
        {PGSPOUT_KIND_TIMESTAMP, "x::timestamp",
         "CASE WHEN isfinite(v) THEN (extract(epoch FROM v) * 1000000)::int8 END"},
        {PGSPOUT_KIND_DATE, "x::date",
         "CASE WHEN isfinite(v) THEN (v - '1970-01-01'::date)::int8 * 86400000000 END"},
        {PGSPOUT_KIND_TIME, "x::time", "(extract(epoch FROM v) * 1000000)::int8"},
        {PGSPOUT_KIND_TIMETZ, "x::timetz", /* the server's epoch of a timetz is UTC */
         "(extract(epoch FROM v) * 1000000)::int8"},
    };
    pgspout_conn *c = tu_connect();
    free(tu_scalar(c, "SELECT set_config('TimeZone', 'Europe/Amsterdam', false)", 0, NULL));
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char sql[1024];
        snprintf(sql, sizeof sql,
                 "SELECT v::text, %s FROM (SELECT %s AS v FROM (SELECT "
                 "'0001-01-01 00:00:00+00'::timestamptz + (random() * 4100 - 2000) * "
                 "interval '1 year' AS x FROM generate_series(1, 20000) UNION ALL SELECT "
                 "'1900-06-01 12:34:56.789012+00') g UNION ALL SELECT %s FROM (SELECT "
                 "'infinity'::timestamptz AS x) i WHERE %d IN (%d, %d, %d)) t",
                 cases[k].epoch, cases[k].expr, cases[k].expr, cases[k].kind,
                 PGSPOUT_KIND_TIMESTAMPTZ, PGSPOUT_KIND_TIMESTAMP, PGSPOUT_KIND_DATE);
        pgspout_stream *s = open_ok(c, sql);
        const pgspout_row *r;
        int rc;
        long n = 0, inf = 0, bc = 0;
        while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
            size_t len;
            const char *v = pgspout_row_value(r, 0, &len);
            pgspout_datetime t;
            if (pgspout_parse_datetime(v, len, cases[k].kind, &t) != PGSPOUT_OK)
                fail_msg("kind %d refused \"%s\"", cases[k].kind, v);
            n++;
            if (t.infinity) {
                assert_int_equal(t.infinity, 1);
                assert_true(pgspout_row_isnull(r, 1)); /* the server's epoch too */
                inf++;
                continue;
            }
            bc += t.year <= 0;
            int64_t want = strtoll(pgspout_row_value(r, 1, NULL), NULL, 10);
            if (epoch_us(&t) != want)
                fail_msg("kind %d \"%s\": %lld us, server %lld", cases[k].kind, v,
                         (long long)epoch_us(&t), (long long)want);
        }
        if (rc != PGSPOUT_DONE)
            fail_msg("%s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
        assert_int_equal(n - inf, 20001);
        if (cases[k].kind != PGSPOUT_KIND_TIME && cases[k].kind != PGSPOUT_KIND_TIMETZ)
            assert_true(bc > 1000 && inf == 1); /* the BC years and infinity were there */
        pgspout_stream_close(s);
    }
    pgspout_conn_close(c);
    pgspout_datetime t;
    static const struct {
        const char *text;
        int kind;
    } bad[] = {{"2024-13-01", PGSPOUT_KIND_DATE},
               {"24-01-01", PGSPOUT_KIND_DATE},
               {"2024-01-01 BCE", PGSPOUT_KIND_DATE},
               {"infinity", PGSPOUT_KIND_TIME},
               {"25:00:00", PGSPOUT_KIND_TIME},
               {"12:00:00", PGSPOUT_KIND_TIMETZ},
               {"12:00:00.", PGSPOUT_KIND_TIME},
               {"2024-01-01T12:00:00", PGSPOUT_KIND_TIMESTAMP},
               {"01/02/2024 12:00:00", PGSPOUT_KIND_TIMESTAMP},
               {"2024-01-01", PGSPOUT_KIND_INTERVAL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (pgspout_parse_datetime(bad[i].text, strlen(bad[i].text), bad[i].kind, &t) !=
            PGSPOUT_EINVAL)
            fail_msg("kind %d accepted \"%s\"", bad[i].kind, bad[i].text);
    assert_int_equal(pgspout_parse_datetime("24:00:00", 8, PGSPOUT_KIND_TIME, &t), PGSPOUT_OK);
    assert_int_equal(t.hour, 24);
}

/* Intervals against the server's own fields: months, days and the time. */
static void test_interval_against_server(void **state)
{
    (void)state;
    pgspout_conn *c = tu_connect();
    pgspout_stream *s = open_ok(
        c, "SELECT v::text, (extract(year FROM v) * 12 + extract(month FROM v))::int8, "
           "extract(day FROM v)::int8, (extract(hour FROM v) * 3600000000 + "
           "extract(minute FROM v) * 60000000 + extract(microseconds FROM v))::int8 FROM "
           "(SELECT make_interval(years => (random() * 200 - 100)::int, months => "
           "(random() * 30 - 15)::int, days => (random() * 90 - 45)::int, secs => "
           "round(((random() - 0.5) * 10 ^ (random() * 10)::int)::numeric, 6)) AS v FROM "
           "generate_series(1, 20000) UNION ALL SELECT unnest('{0,-1 sec,2562047788:00:54.775807,"
           "-178000000 years,1 day -1 sec}'::interval[])) t");
    const pgspout_row *r;
    int rc;
    long n = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        size_t len;
        const char *v = pgspout_row_value(r, 0, &len);
        pgspout_interval iv;
        if (pgspout_parse_interval(v, len, &iv) != PGSPOUT_OK)
            fail_msg("refused \"%s\"", v);
        long long m = strtoll(pgspout_row_value(r, 1, NULL), NULL, 10);
        long long d = strtoll(pgspout_row_value(r, 2, NULL), NULL, 10);
        long long us = strtoll(pgspout_row_value(r, 3, NULL), NULL, 10);
        if (iv.months != m || iv.days != d || iv.usec != us)
            fail_msg("\"%s\": %d mons %d days %lld us, server %lld %lld %lld", v, iv.months,
                     iv.days, (long long)iv.usec, m, d, us);
        n++;
    }
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s", pgspout_code_name(rc), pgspout_stream_error(s));
    assert_int_equal(n, 20005);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
    pgspout_interval iv;
    static const char *const bad[] = {"",          "1 fortnight", "@ 1 day", "P1D",
                                      "1 day 1:2", "12:60:00",    "1day"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (pgspout_parse_interval(bad[i], strlen(bad[i]), &iv) != PGSPOUT_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
    int gate = tu_db_gate("test_values");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float8_random_and_hard),
        cmocka_unit_test(test_float8_words_and_refusals),
        cmocka_unit_test(test_int8),
        cmocka_unit_test(test_float8_against_server),
        cmocka_unit_test(test_uuid_and_bytea_against_server),
        cmocka_unit_test(test_datetime_against_server),
        cmocka_unit_test(test_interval_against_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
