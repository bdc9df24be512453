/* test_options.c - options: defaults, units, bad values, errors (no server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "pgspout.h"
#include "testutil.h"

/* Every stream and connection key the header documents. */
static const char *const all_keys[] = {
    "chunk_rows",
    "chunk_bytes",
    "adaptive_chunking",
    "chunk_rows_min",
    "chunk_rows_max",
    "max_memory",
    "memory_warn",
    "memory_fail",
    "max_rows",
    "timeout",
    "statement_timeout",
    "pause_timeout",
    "on_pause_timeout",
    "max_rate",
    "label",
    "expected_rows",
    "metrics",
    "progress_rows",
    "progress_interval",
    "idle_timeout",
    "pool",
    "connect_timeout",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "application_name",
    "arrow",
    "max_size",
    "min_idle",
    "max_lifetime",
    "acquire_timeout",
};
#define NKEYS (sizeof all_keys / sizeof all_keys[0])

/* The parsed fields of two option sets are equal (err excluded). */
static void assert_same_options(const pgspout_options *a, const pgspout_options *b)
{
#define EQ(f) assert_true(a->f == b->f)
    EQ(chunk_rows);
    EQ(chunk_bytes);
    EQ(adaptive_chunking);
    EQ(chunk_rows_min);
    EQ(chunk_rows_max);
    EQ(max_memory);
    EQ(memory_warn);
    EQ(memory_fail);
    EQ(max_rows);
    EQ(timeout_ms);
    EQ(statement_timeout_ms);
    EQ(pause_timeout_ms);
    EQ(on_pause_timeout_cancel);
    EQ(max_rate);
    EQ(expected_rows);
    EQ(metrics);
    EQ(progress_rows);
    EQ(progress_interval_ms);
    EQ(idle_timeout_ms);
    EQ(pool);
    EQ(arrow);
    EQ(connect_timeout_ms);
    EQ(keepalives_idle_ms);
    EQ(keepalives_interval_ms);
    EQ(keepalives_count);
    EQ(tcp_user_timeout_ms);
    EQ(max_size);
    EQ(min_idle);
    EQ(max_lifetime_ms);
    EQ(acquire_timeout_ms);
    EQ(filter);
    EQ(filter_ud);
    EQ(progress);
    EQ(progress_ud);
#undef EQ
    assert_string_equal(a->label, b->label);
    assert_string_equal(a->application_name, b->application_name);
}

static pgspout_options *new_opts(void)
{
    pgspout_options *o = pgspout_options_new();
    assert_non_null(o);
    return o;
}

/* set key=value must succeed */
static void set_ok(pgspout_options *o, const char *k, const char *v)
{
    int rc = pgspout_options_set(o, k, v);
    if (rc != PGSPOUT_OK)
        fail_msg("options_set(%s, \"%s\") = %d (%s), want OK: %s", k, v, rc, pgspout_code_name(rc),
                 pgspout_options_error(o));
}

/* set key=value must fail with EVALUE, leave every field as it was, and say
 * which key and value were wrong */
static void set_bad(pgspout_options *o, const char *k, const char *v)
{
    pgspout_options before = *o;
    int rc = pgspout_options_set(o, k, v);
    if (rc != PGSPOUT_EVALUE)
        fail_msg("options_set(%s, \"%s\") = %d (%s), want EVALUE", k, v, rc, pgspout_code_name(rc));
    assert_same_options(&before, o);
    const char *err = pgspout_options_error(o);
    assert_non_null(err);
    if (!strstr(err, k))
        fail_msg("error for %s=\"%s\" does not name the key: %s", k, v, err);
    if (*v && strlen(v) < 40 && !strstr(err, v))
        fail_msg("error for %s=\"%s\" does not name the value: %s", k, v, err);
}

/* ------------------------------------------------------------- defaults */

static void test_defaults(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    assert_int_equal(o->chunk_rows, 1000);
    assert_int_equal(o->chunk_bytes, 1048576);
    assert_int_equal(o->adaptive_chunking, 0);
    assert_int_equal(o->chunk_rows_min, 100);
    assert_int_equal(o->chunk_rows_max, 100000);
    assert_int_equal(o->max_memory, 64 * 1048576);
    assert_true(o->memory_warn == 0.8);
    assert_true(o->memory_fail == 1.0);
    assert_int_equal(o->max_rows, 0);
    assert_int_equal(o->timeout_ms, 0);
    assert_int_equal(o->statement_timeout_ms, 0);
    assert_int_equal(o->pause_timeout_ms, 0);
    assert_int_equal(o->on_pause_timeout_cancel, 0);
    assert_true(o->max_rate == 0);
    assert_string_equal(o->label, "default");
    assert_int_equal(o->expected_rows, 0);
    assert_int_equal(o->metrics, 1);
    assert_int_equal(o->progress_rows, 0);
    assert_int_equal(o->progress_interval_ms, 0);
    assert_int_equal(o->idle_timeout_ms, 60000);
    assert_int_equal(o->pool, 1);
    /* connection keys: not set until the caller sets them */
    assert_int_equal(o->connect_timeout_ms, -1);
    assert_int_equal(o->keepalives_idle_ms, -1);
    assert_int_equal(o->keepalives_interval_ms, -1);
    assert_int_equal(o->keepalives_count, -1);
    assert_int_equal(o->tcp_user_timeout_ms, -1);
    assert_string_equal(o->application_name, "");
    assert_null(o->filter);
    assert_null(o->progress);
    assert_string_equal(pgspout_options_error(o), "");

    /* pgs_options_defaults gives the same as options_new */
    pgspout_options d;
    memset(&d, 0xa5, sizeof d);
    pgs_options_defaults(&d);
    assert_same_options(o, &d);
    pgspout_options_free(o);
}

/* The defaults as seen through the public getter. */
static void test_defaults_via_get(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    static const struct {
        const char *key;
        int64_t want; /* compared after parsing get()'s text with the key's parser */
        char kind;    /* i int, s size, d duration (ms) */
    } nums[] = {
        {"chunk_rows", 1000, 'i'},     {"chunk_bytes", 1048576, 's'},
        {"chunk_rows_min", 100, 'i'},  {"chunk_rows_max", 100000, 'i'},
        {"max_memory", 67108864, 's'}, {"max_rows", 0, 'i'},
        {"timeout", 0, 'd'},           {"statement_timeout", 0, 'd'},
        {"pause_timeout", 0, 'd'},     {"expected_rows", 0, 'i'},
        {"progress_rows", 0, 'i'},     {"progress_interval", 0, 'd'},
        {"idle_timeout", 60000, 'd'},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        const char *g = pgspout_options_get(o, nums[i].key);
        if (!g)
            fail_msg("get(%s) = NULL", nums[i].key);
        int64_t v = -12345;
        int rc = nums[i].kind == 'd' ? pgs_parse_duration_ms(g, &v) : pgs_parse_size(g, &v);
        if (rc != 0 || v != nums[i].want)
            fail_msg("get(%s) = \"%s\" (parsed %lld), want %lld", nums[i].key, g, (long long)v,
                     (long long)nums[i].want);
    }
    assert_string_equal(pgspout_options_get(o, "label"), "default");
    assert_string_equal(pgspout_options_get(o, "on_pause_timeout"), "resume");
    int b = -1;
    assert_int_equal(pgs_parse_bool(pgspout_options_get(o, "adaptive_chunking"), &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(pgs_parse_bool(pgspout_options_get(o, "metrics"), &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(pgs_parse_bool(pgspout_options_get(o, "pool"), &b), 0);
    assert_int_equal(b, 1);
    assert_true(strtod(pgspout_options_get(o, "memory_warn"), NULL) == 0.8);
    assert_true(strtod(pgspout_options_get(o, "memory_fail"), NULL) == 1.0);
    assert_true(strtod(pgspout_options_get(o, "max_rate"), NULL) == 0);
    for (size_t i = 0; i < NKEYS; i++)
        if (!pgspout_options_get(o, all_keys[i]))
            fail_msg("get(%s) = NULL for a documented key", all_keys[i]);
    pgspout_options_free(o);
}

/* ------------------------------------------------------------ parsers */

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"1", 1},
        {"65536", 65536},
        {"10B", 10},
        {"1kB", 1024},
        {"1KB", 1024},
        {"64kB", 65536},
        {"64MB", INT64_C(64) * 1048576},
        {"1GB", INT64_C(1073741824)},
        {"2TB", INT64_C(2) << 40},
        {"1048576", 1048576},
        {"9223372036854775", INT64_C(9223372036854775)},
        /* exact integers beyond 2^53 must not be rounded */
        {"9007199254740993", INT64_C(9007199254740993)},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        int rc = pgs_parse_size(ok[i].in, &v);
        if (rc != 0 || v != ok[i].want) {
            print_error("pgs_parse_size(\"%s\") = %d, %lld; want 0, %lld\n", ok[i].in, rc,
                        (long long)v, (long long)ok[i].want);
            failures++;
        }
    }
    if (failures)
        fail_msg("%d size(s) parsed wrong", failures);
    static const char *const bad[] = {
        "",
        "MB",
        "-1",
        "-1MB",
        "64XB",
        "64 parsecs",
        "64MBx",
        "1.5.5MB",
        "abc",
        "0x10",
        "64mb",
        "1e3",
        "64 kB extra",
        "99999999999999999999", /* > INT64_MAX */
        "8388608TB",            /* 2^63 */
        "16777216TB",           /* 2^64 */
        "9223372036854775808",  /* INT64_MAX + 1 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 777;
        if (pgs_parse_size(bad[i], &v) != -1)
            fail_msg("pgs_parse_size(\"%s\") accepted (%lld)", bad[i], (long long)v);
    }
    int64_t v;
    assert_int_equal(pgs_parse_size(NULL, &v), -1);
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t want;
    } ok[] = {
        {"0", 0},          {"5", 5000},      {"30", 30000},    {"250ms", 250},
        {"1ms", 1},        {"30s", 30000},   {"5min", 300000}, {"1h", 3600000},
        {"2d", 172800000}, {"1000ms", 1000}, {"0s", 0},        {"0ms", 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t v = -1;
        int rc = pgs_parse_duration_ms(ok[i].in, &v);
        if (rc != 0 || v != ok[i].want)
            fail_msg("pgs_parse_duration_ms(\"%s\") = %d, %lld; want 0, %lld", ok[i].in, rc,
                     (long long)v, (long long)ok[i].want);
    }
    static const char *const bad[] = {
        "",
        "s",
        "ms",
        "-1",
        "-1s",
        "30x",
        "30 seconds",
        "5mins",
        "1.2.3s",
        "abc",
        "1e3",
        "30S",
        "30sx",
        "9223372036854775807s", /* overflows in ms */
        "99999999999999999999",
        "106751991167301d", /* ~2^63 ms */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 777;
        if (pgs_parse_duration_ms(bad[i], &v) != -1)
            fail_msg("pgs_parse_duration_ms(\"%s\") accepted (%lld)", bad[i], (long long)v);
    }
    int64_t v;
    assert_int_equal(pgs_parse_duration_ms(NULL, &v), -1);
}

static void test_parse_bool(void **state)
{
    (void)state;
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    for (int i = 0; i < 4; i++) {
        int b = -1;
        assert_int_equal(pgs_parse_bool(yes[i], &b), 0);
        assert_int_equal(b, 1);
        b = -1;
        assert_int_equal(pgs_parse_bool(no[i], &b), 0);
        assert_int_equal(b, 0);
    }
    static const char *const bad[] = {"", "2", "-1", "onn", "of", "yess", "t rue", " on", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int b = 7;
        if (pgs_parse_bool(bad[i], &b) != -1)
            fail_msg("pgs_parse_bool(\"%s\") accepted", bad[i]);
    }
    int b;
    assert_int_equal(pgs_parse_bool(NULL, &b), -1);
}

/* ------------------------------------------------------- set: good values */

static void test_set_units(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    set_ok(o, "max_memory", "64MB");
    assert_int_equal(o->max_memory, INT64_C(64) << 20);
    set_ok(o, "max_memory", "1kB");
    assert_int_equal(o->max_memory, 1024);
    set_ok(o, "max_memory", "2GB");
    assert_int_equal(o->max_memory, INT64_C(2) << 30);
    set_ok(o, "max_memory", "1048576");
    assert_int_equal(o->max_memory, 1048576);
    set_ok(o, "chunk_bytes", "64kB");
    assert_int_equal(o->chunk_bytes, 65536);
    set_ok(o, "chunk_bytes", "1");
    assert_int_equal(o->chunk_bytes, 1);

    set_ok(o, "timeout", "30s");
    assert_int_equal(o->timeout_ms, 30000);
    set_ok(o, "timeout", "250ms");
    assert_int_equal(o->timeout_ms, 250);
    set_ok(o, "timeout", "5min");
    assert_int_equal(o->timeout_ms, 300000);
    set_ok(o, "timeout", "2");
    assert_int_equal(o->timeout_ms, 2000);
    set_ok(o, "timeout", "0");
    assert_int_equal(o->timeout_ms, 0);
    set_ok(o, "statement_timeout", "1h");
    assert_int_equal(o->statement_timeout_ms, 3600000);
    set_ok(o, "pause_timeout", "500ms");
    assert_int_equal(o->pause_timeout_ms, 500);
    set_ok(o, "idle_timeout", "2d");
    assert_int_equal(o->idle_timeout_ms, 172800000);
    set_ok(o, "progress_interval", "100ms");
    assert_int_equal(o->progress_interval_ms, 100);

    set_ok(o, "chunk_rows", "1");
    assert_int_equal(o->chunk_rows, 1);
    set_ok(o, "chunk_rows", "10000000");
    assert_int_equal(o->chunk_rows, 10000000);
    set_ok(o, "chunk_rows_min", "10");
    set_ok(o, "chunk_rows_max", "5000");
    assert_int_equal(o->chunk_rows_min, 10);
    assert_int_equal(o->chunk_rows_max, 5000);
    set_ok(o, "max_rows", "250");
    assert_int_equal(o->max_rows, 250);
    set_ok(o, "max_rows", "0");
    assert_int_equal(o->max_rows, 0);
    set_ok(o, "expected_rows", "9223372036854775807");
    assert_true(o->expected_rows == INT64_MAX);
    set_ok(o, "progress_rows", "1000");
    assert_int_equal(o->progress_rows, 1000);

    set_ok(o, "memory_warn", "0.5");
    assert_true(o->memory_warn == 0.5);
    set_ok(o, "memory_fail", "0.9");
    assert_true(o->memory_fail == 0.9);
    set_ok(o, "memory_fail", "1");
    assert_true(o->memory_fail == 1.0);
    set_ok(o, "max_rate", "1000");
    assert_true(o->max_rate == 1000);
    set_ok(o, "max_rate", "2.5");
    assert_true(o->max_rate == 2.5);
    set_ok(o, "max_rate", "0");
    assert_true(o->max_rate == 0);

    set_ok(o, "on_pause_timeout", "cancel");
    assert_int_equal(o->on_pause_timeout_cancel, 1);
    set_ok(o, "on_pause_timeout", "resume");
    assert_int_equal(o->on_pause_timeout_cancel, 0);
    /* rows shapes rows in the bindings, which take it out of the options */
    assert_int_equal(pgspout_options_set(o, "rows", "dict"), PGSPOUT_EOPTION);

    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    for (int i = 0; i < 4; i++) {
        set_ok(o, "adaptive_chunking", yes[i]);
        assert_int_equal(o->adaptive_chunking, 1);
        set_ok(o, "adaptive_chunking", no[i]);
        assert_int_equal(o->adaptive_chunking, 0);
        set_ok(o, "metrics", no[i]);
        assert_int_equal(o->metrics, 0);
        set_ok(o, "metrics", yes[i]);
        assert_int_equal(o->metrics, 1);
    }

    set_ok(o, "label", "etl.nightly:v2-a_b");
    assert_string_equal(o->label, "etl.nightly:v2-a_b");
    char l64[65];
    memset(l64, 'x', 64);
    l64[64] = 0;
    set_ok(o, "label", l64);
    assert_string_equal(o->label, l64);

    set_ok(o, "connect_timeout", "5s");
    assert_int_equal(o->connect_timeout_ms, 5000);
    set_ok(o, "keepalives_idle", "30s");
    assert_int_equal(o->keepalives_idle_ms, 30000);
    set_ok(o, "keepalives_interval", "10s");
    assert_int_equal(o->keepalives_interval_ms, 10000);
    set_ok(o, "keepalives_count", "3");
    assert_int_equal(o->keepalives_count, 3);
    set_ok(o, "tcp_user_timeout", "10s");
    assert_int_equal(o->tcp_user_timeout_ms, 10000);
    set_ok(o, "application_name", "myjob");
    assert_string_equal(o->application_name, "myjob");
    pgspout_options_free(o);
}

/* ------------------------------------------------------- set: bad values */

static void test_set_bad_values(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    /* a non-default previous value, to see it survive */
    set_ok(o, "chunk_rows", "500");
    set_ok(o, "max_memory", "8MB");
    set_ok(o, "timeout", "30s");
    set_ok(o, "label", "keep");

    static const struct {
        const char *k, *v;
    } bad[] = {
        /* bad units */
        {"max_memory", "64XB"},
        {"max_memory", "64 parsecs"},
        {"max_memory", "MB"},
        {"max_memory", ""},
        {"max_memory", "64s"},
        {"chunk_bytes", "1min"},
        {"timeout", "30x"},
        {"timeout", "30MB"},
        {"timeout", "s"},
        {"pause_timeout", "soon"},
        {"statement_timeout", "1 fortnight"},
        {"idle_timeout", "5mins"},
        {"chunk_rows", "10MB"},
        {"chunk_rows", "1s"},
        {"chunk_rows", "1.5"},
        {"max_rows", "10k"},
        /* negatives */
        {"chunk_rows", "-1"},
        {"max_memory", "-1MB"},
        {"max_memory", "-5"},
        {"max_rows", "-1"},
        {"timeout", "-5s"},
        {"pause_timeout", "-1"},
        {"expected_rows", "-1"},
        {"max_rate", "-1"},
        {"memory_warn", "-0.1"},
        {"memory_fail", "-1"},
        {"progress_rows", "-10"},
        {"keepalives_count", "-1"},
        /* ranges */
        {"chunk_rows", "0"},
        {"chunk_rows", "10000001"},
        {"memory_warn", "1.5"},
        {"memory_fail", "2"},
        /* overflow */
        {"chunk_rows", "99999999999999999999"},
        {"max_rows", "9223372036854775808"},
        {"expected_rows", "99999999999999999999999"},
        {"max_memory", "99999999999999999999"},
        {"max_memory", "16777216TB"},
        {"max_memory", "8388608TB"},
        {"timeout", "9223372036854775807s"},
        {"timeout", "99999999999999999999"},
        {"statement_timeout", "100d"}, /* the server takes an int32 of ms */
        /* malformed */
        {"max_rate", "fast"},
        {"max_rate", "1000rows"},
        {"memory_warn", "half"},
        {"adaptive_chunking", "maybe"},
        {"adaptive_chunking", ""},
        {"metrics", "2"},
        {"on_pause_timeout", "abort"},
        {"on_pause_timeout", ""},
        {"label", ""},
        {"label", "has space"},
        {"label", "quote\"d"},
        {"label", "brace{"},
        {"label", "caf\xc3\xa9"},
        {"label", "new\nline"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        set_bad(o, bad[i].k, bad[i].v);

    char l65[66];
    memset(l65, 'x', 65);
    l65[65] = 0;
    set_bad(o, "label", l65);

    /* the previous values are still there */
    assert_int_equal(o->chunk_rows, 500);
    assert_int_equal(o->max_memory, 8 << 20);
    assert_int_equal(o->timeout_ms, 30000);
    assert_string_equal(o->label, "keep");
    pgspout_options_free(o);
}

/* ---------------------------------------------------------- unknown keys */

static void test_unknown_keys(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    pgspout_options before = *o;
    static const char *const keys[] = {"nosuchkey",  "chunk_row", "max memory", "max_memory ",
                                       "timeout_ms", "maxmemory", "x"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int rc = pgspout_options_set(o, keys[i], "1");
        if (rc != PGSPOUT_EOPTION)
            fail_msg("set(\"%s\") = %d, want EOPTION", keys[i], rc);
        const char *err = pgspout_options_error(o);
        if (!strstr(err, keys[i]))
            fail_msg("error for unknown key \"%s\" does not name it: %s", keys[i], err);
        assert_same_options(&before, o);
        assert_null(pgspout_options_get(o, keys[i]));
    }
    pgspout_options_free(o);
}

/* ----------------------------------------------------------- NULL args */

static int dummy_filter(const pgspout_row *r, void *ud)
{
    (void)r;
    (void)ud;
    return 1;
}
static void dummy_progress(const pgspout_stats *st, void *ud)
{
    (void)st;
    (void)ud;
}

static void test_null_arguments(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    pgspout_options before = *o;
    assert_int_equal(pgspout_options_set(NULL, "chunk_rows", "10"), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_options_set(o, NULL, "10"), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_options_set(o, "chunk_rows", NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_options_set(o, NULL, NULL), PGSPOUT_EINVAL);
    assert_same_options(&before, o);
    assert_null(pgspout_options_get(NULL, "chunk_rows"));
    assert_null(pgspout_options_get(o, NULL));
    assert_non_null(pgspout_options_error(NULL)); /* never crashes */
    pgspout_options_free(NULL);
    assert_int_equal(pgspout_options_set_filter(NULL, dummy_filter, NULL), PGSPOUT_EINVAL);
    assert_int_equal(pgspout_options_set_progress(NULL, dummy_progress, NULL), PGSPOUT_EINVAL);

    int ud = 0;
    assert_int_equal(pgspout_options_set_filter(o, dummy_filter, &ud), PGSPOUT_OK);
    assert_true(o->filter == dummy_filter && o->filter_ud == &ud);
    assert_int_equal(pgspout_options_set_filter(o, NULL, NULL), PGSPOUT_OK);
    assert_null(o->filter);
    assert_int_equal(pgspout_options_set_progress(o, dummy_progress, &ud), PGSPOUT_OK);
    assert_true(o->progress == dummy_progress && o->progress_ud == &ud);
    pgspout_options_free(o);
}

/* --------------------------------------------------------- get round-trips */

/* For every key: set a value, read it back with get, set that text again on
 * a fresh set, and the parsed options are identical. Also on the defaults
 * (get of an untouched key must be accepted by set). */
static void test_get_round_trips(void **state)
{
    (void)state;
    static const struct {
        const char *k, *v;
    } vals[] = {
        {"chunk_rows", "777"},
        {"chunk_bytes", "64kB"},
        {"adaptive_chunking", "on"},
        {"chunk_rows_min", "7"},
        {"chunk_rows_max", "70000"},
        {"max_memory", "3MB"},
        {"memory_warn", "0.75"},
        {"memory_fail", "0.95"},
        {"max_rows", "123"},
        {"timeout", "1500ms"},
        {"statement_timeout", "2s"},
        {"pause_timeout", "5min"},
        {"on_pause_timeout", "cancel"},
        {"max_rate", "1500"},
        {"max_rate", "1000000"},
        {"max_rate", "0.25"},
        {"label", "a.b:c-d_e"},
        {"expected_rows", "1000000"},
        {"metrics", "off"},
        {"progress_rows", "50"},
        {"progress_interval", "2s"},
        {"idle_timeout", "1h"},
        {"connect_timeout", "3s"},
        {"keepalives_idle", "1min"},
        {"keepalives_interval", "5s"},
        {"keepalives_count", "4"},
        {"tcp_user_timeout", "9s"},
        {"application_name", "app1"},
        {"max_size", "64"},
        {"min_idle", "2"},
        {"max_lifetime", "45min"},
        {"acquire_timeout", "250ms"},
        {"memory_warn", "0.123456789"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        pgspout_options *a = new_opts(), *b = new_opts();
        set_ok(a, vals[i].k, vals[i].v);
        const char *g = pgspout_options_get(a, vals[i].k);
        assert_non_null(g);
        char copy[128];
        snprintf(copy, sizeof copy, "%s", g);
        int rc = pgspout_options_set(b, vals[i].k, copy);
        if (rc != PGSPOUT_OK) {
            print_error("round trip %s=\"%s\": get gave \"%s\", which set rejects (%d): %s\n",
                        vals[i].k, vals[i].v, copy, rc, pgspout_options_error(b));
            failures++;
        } else if (memcmp(&a->memory_warn, &b->memory_warn, sizeof(double)) ||
                   a->max_rate != b->max_rate) {
            print_error("round trip %s=\"%s\": get gave \"%s\", which parses to another "
                        "value\n",
                        vals[i].k, vals[i].v, copy);
            failures++;
        } else
            assert_same_options(a, b);
        pgspout_options_free(a);
        pgspout_options_free(b);
    }
    /* defaults: set(k, get(k)) is accepted and changes nothing */
    pgspout_options *d = new_opts();
    for (size_t i = 0; i < NKEYS; i++) {
        pgspout_options *x = new_opts();
        const char *g = pgspout_options_get(d, all_keys[i]);
        assert_non_null(g);
        char copy[128];
        snprintf(copy, sizeof copy, "%s", g);
        int rc = pgspout_options_set(x, all_keys[i], copy);
        if (rc != PGSPOUT_OK) {
            print_error("default round trip %s: get gave \"%s\", which set rejects (%d): %s\n",
                        all_keys[i], copy, rc, pgspout_options_error(x));
            failures++;
        } else
            assert_same_options(d, x);
        pgspout_options_free(x);
    }
    pgspout_options_free(d);
    if (failures)
        fail_msg("%d option value(s) do not round-trip through pgspout_options_get", failures);
}

/* get's buffer is thread-local and valid until the next get. */
static void test_get_buffer(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    set_ok(o, "label", "first");
    const char *a = pgspout_options_get(o, "label");
    assert_string_equal(a, "first");
    set_ok(o, "label", "second");
    assert_string_equal(pgspout_options_get(o, "label"), "second");
    pgspout_options_free(o);
}

/* A failed set, then a good one: the good one applies. */
static void test_error_then_ok(void **state)
{
    (void)state;
    pgspout_options *o = new_opts();
    assert_int_equal(pgspout_options_set(o, "max_memory", "12XB"), PGSPOUT_EVALUE);
    assert_true(strlen(pgspout_options_error(o)) > 0);
    set_ok(o, "max_memory", "12MB");
    assert_int_equal(o->max_memory, 12 << 20);
    pgspout_options_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_defaults_via_get),
        cmocka_unit_test(test_parse_size),     cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_bool),     cmocka_unit_test(test_set_units),
        cmocka_unit_test(test_set_bad_values), cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_null_arguments), cmocka_unit_test(test_get_round_trips),
        cmocka_unit_test(test_get_buffer),     cmocka_unit_test(test_error_then_ok),
    };
    return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
