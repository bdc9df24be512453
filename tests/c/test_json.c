/* test_json.c - JSON rendering helpers and the growable buffer (no server).
 * Every output is also run through the strict validator in testutil.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "pgspout.h"
#include "testutil.h"

/* Render s[0..n) with pgs_json_string; check validity; return malloc'd. */
static char *jstr(const char *s, size_t n, size_t *outlen)
{
    pgs_buf b = PGS_BUF_INIT;
    assert_int_equal(pgs_json_string(&b, s, n), 0);
    assert_int_equal(b.oom, 0);
    assert_non_null(b.data);
    assert_int_equal(strlen(b.data), b.len); /* NUL-terminated, no raw NUL */
    if (!tu_json_valid(b.data, b.len))
        fail_msg("pgs_json_string output is not valid JSON: %s", b.data);
    if (outlen)
        *outlen = b.len;
    return pgs_buf_steal(&b);
}

static void expect_str(const char *in, size_t n, const char *want)
{
    char *got = jstr(in, n, NULL);
    if (strcmp(got, want))
        fail_msg("pgs_json_string(%.*s) = %s, want %s", (int)n, in, got, want);
    free(got);
}

/* Decoding the output gives back the input (for valid UTF-8 input). */
static void expect_round_trip(const char *in, size_t n)
{
    char *got = jstr(in, n, NULL);
    tu_buf canon = {0}, want = {0};
    assert_int_equal(tu_json_canon(got, strlen(got), &canon), 0);
    /* canonical form of the input, built by the validator's own escaper */
    tu_buf lit = {0};
    tu_buf_addc(&lit, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            tu_buf_add(&lit, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            tu_buf_add(&lit, e, 6);
        } else
            tu_buf_addc(&lit, (char)c);
    }
    tu_buf_addc(&lit, '"');
    assert_int_equal(tu_json_canon(lit.data, lit.len, &want), 0);
    if (canon.len != want.len || memcmp(canon.data, want.data, canon.len))
        fail_msg("round trip of %.*s: got %s", (int)n, in, got);
    tu_buf_free(&canon);
    tu_buf_free(&want);
    tu_buf_free(&lit);
    free(got);
}

/* ------------------------------------------------------------- strings */

static void test_string_plain(void **state)
{
    (void)state;
    expect_str("", 0, "\"\"");
    expect_str("hello", 5, "\"hello\"");
    expect_str("a b/c", 5, "\"a b/c\"");
    /* only n bytes are used */
    expect_str("abcdef", 3, "\"abc\"");
}

static void test_string_escapes(void **state)
{
    (void)state;
    expect_str("say \"hi\"", 8, "\"say \\\"hi\\\"\"");
    expect_str("back\\slash", 10, "\"back\\\\slash\"");
    expect_str("\"", 1, "\"\\\"\"");
    expect_str("\\", 1, "\"\\\\\"");
    /* control characters without a short form: \u00XX */
    expect_str("\x01", 1, "\"\\u0001\"");
    expect_str("\x1f", 1, "\"\\u001f\"");
    expect_str("a\x0b"
               "b",
               3, "\"a\\u000bb\"");
    expect_str("\x1b[0m", 4, "\"\\u001b[0m\"");
    /* an embedded NUL is data, not the end */
    expect_str("a\0b", 3, "\"a\\u0000b\"");
    /* DEL is not a JSON control character: passes through */
    expect_str("\x7f", 1, "\"\x7f\"");
    /* every control character decodes back to itself */
    for (int c = 0; c < 0x20; c++) {
        char in[3] = {'x', (char)c, 'y'};
        expect_round_trip(in, 3);
        char *got = jstr(in, 3, NULL);
        for (const char *p = got; *p; p++)
            if ((unsigned char)*p < 0x20)
                fail_msg("raw control character 0x%02x in output for 0x%02x", *p, c);
        free(got);
    }
    const char mix[] = "tab\there\nnew\rret\bbs\fff \"q\" \\ /";
    expect_round_trip(mix, sizeof mix - 1);
}

static void test_string_unicode(void **state)
{
    (void)state;
    /* valid UTF-8 passes through byte for byte */
    const char *u[] = {
        "caf\xc3\xa9",              /* é (2 bytes) */
        "\xe2\x82\xac",             /* € (3 bytes) */
        "\xf0\x9f\x98\x80",         /* 😀 (4 bytes) */
        "\xe4\xb8\xad\xe6\x96\x87", /* 中文 */
        "\xef\xbf\xbf",             /* U+FFFF */
        "\xf4\x8f\xbf\xbf",         /* U+10FFFF, the last code point */
        "\xe2\x80\xa8\xe2\x80\xa9", /* U+2028/2029: valid JSON */
        "\xc2\x80",                 /* U+0080, first 2-byte */
        "\xe0\xa0\x80",             /* U+0800, first 3-byte */
        "\xf0\x90\x80\x80",         /* U+10000, first 4-byte */
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", u[i]);
        expect_str(u[i], strlen(u[i]), want);
    }
}

/* Count U+FFFD in s. */
static int count_fffd(const char *s)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, "\xef\xbf\xbd")) != NULL; p += 3)
        n++;
    return n;
}

static void test_string_invalid_utf8(void **state)
{
    (void)state;
    /* a lone invalid byte: exactly one U+FFFD, neighbours kept */
    expect_str("a\xff"
               "b",
               3,
               "\"a\xef\xbf\xbd"
               "b\"");
    expect_str("\x80", 1, "\"\xef\xbf\xbd\"");
    expect_str("\xfe", 1, "\"\xef\xbf\xbd\"");
    /* malformed sequences: output valid, at least one U+FFFD, no raw bytes
     * of the bad sequence left, ASCII around them intact */
    static const struct {
        const char *in;
        size_t n;
    } bad[] = {
        {"x\xc3y", 3},             /* truncated 2-byte (next is ASCII) */
        {"x\xc3", 2},              /* truncated at the end */
        {"x\xe2\x82", 3},          /* truncated 3-byte at the end */
        {"x\xf0\x9f\x98", 4},      /* truncated 4-byte at the end */
        {"x\xc0\xafy", 4},         /* overlong '/' */
        {"x\xc1\xbfy", 4},         /* overlong */
        {"x\xe0\x80\xafy", 5},     /* overlong 3-byte */
        {"x\xf0\x80\x80\xafy", 6}, /* overlong 4-byte */
        {"x\xed\xa0\x80y", 5},     /* UTF-16 surrogate D800 */
        {"x\xed\xbf\xbfy", 5},     /* surrogate DFFF */
        {"x\xf4\x90\x80\x80y", 6}, /* > U+10FFFF */
        {"x\xf5\x80\x80\x80y", 6}, /* invalid lead */
        {"x\xbf\xbfy", 4},         /* stray continuations */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *got = jstr(bad[i].in, bad[i].n, NULL);
        if (count_fffd(got) < 1)
            fail_msg("case %zu: no U+FFFD in %s", i, got);
        if (got[1] != 'x')
            fail_msg("case %zu: leading ASCII lost: %s", i, got);
        if (bad[i].in[bad[i].n - 1] == 'y' && got[strlen(got) - 2] != 'y')
            fail_msg("case %zu: trailing ASCII lost: %s", i, got);
        free(got);
    }
    /* valid text after invalid bytes is still passed through */
    char *got = jstr("\xff\xe2\x82\xac", 4, NULL);
    assert_string_equal(got, "\"\xef\xbf\xbd\xe2\x82\xac\"");
    free(got);
}

/* Big input (worst-case expansion) and appending to a non-empty buffer. */
static void test_string_large_and_append(void **state)
{
    (void)state;
    size_t n = 100000;
    char *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)(i % 3 == 0 ? 0x01 : i % 3 == 1 ? '"' : 0xff);
    size_t len = 0;
    char *got = jstr(in, n, &len);
    assert_true(len > n);
    free(got);
    free(in);

    pgs_buf b = PGS_BUF_INIT;
    assert_int_equal(pgs_buf_puts(&b, "["), 0);
    assert_int_equal(pgs_json_string(&b, "a", 1), 0);
    assert_int_equal(pgs_buf_putc(&b, ','), 0);
    assert_int_equal(pgs_json_string(&b, "b\"", 2), 0);
    assert_int_equal(pgs_buf_putc(&b, ']'), 0);
    assert_string_equal(b.data, "[\"a\",\"b\\\"\"]");
    assert_true(tu_json_valid(b.data, b.len));
    pgs_buf_free(&b);
}

/* -------------------------------------------------------------- values */

static char *jval(int kind, const char *v, int isnull)
{
    pgs_buf b = PGS_BUF_INIT;
    assert_int_equal(pgs_json_value(&b, kind, v, v ? strlen(v) : 0, isnull), 0);
    assert_int_equal(b.oom, 0);
    if (!tu_json_valid(b.data, b.len))
        fail_msg("pgs_json_value(%d, %s) is not valid JSON: %s", kind, v ? v : "NULL",
                 b.data ? b.data : "(empty)");
    return pgs_buf_steal(&b);
}

static void expect_val(int kind, const char *v, int isnull, const char *want)
{
    char *got = jval(kind, v, isnull);
    if (strcmp(got, want))
        fail_msg("pgs_json_value(kind %d, \"%s\", null=%d) = %s, want %s", kind, v ? v : "(NULL)",
                 isnull, got, want);
    free(got);
}

static void test_value_numbers(void **state)
{
    (void)state;
    /* PostgreSQL's text forms of int2/4/8, oid, numeric, float4/8 */
    static const char *const nums[] = {
        "0",
        "1",
        "-1",
        "32767",
        "-32768",
        "2147483647",
        "-9223372036854775808",
        "4294967295",
        "1.5",
        "-0",
        "0.1",
        "1e+100",
        "1.7976931348623157e+308",
        "5e-324",
        "-1.5e-10",
        "123456789012345678901234567890.123456789012345678901234567890",
        "0.000000000000000000000000000001",
        "100.00",
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        expect_val(PGS_JSON_NUMBER, nums[i], 0, nums[i]);
    /* non-finite: strings, as to_json renders them */
    expect_val(PGS_JSON_NUMBER, "NaN", 0, "\"NaN\"");
    expect_val(PGS_JSON_NUMBER, "Infinity", 0, "\"Infinity\"");
    expect_val(PGS_JSON_NUMBER, "-Infinity", 0, "\"-Infinity\"");
    expect_val(PGS_JSON_NUMBER, NULL, 1, "null");
    expect_val(PGS_JSON_NUMBER, "", 1, "null");
}

static void test_value_bools_null_raw(void **state)
{
    (void)state;
    expect_val(PGS_JSON_BOOL, "t", 0, "true");
    expect_val(PGS_JSON_BOOL, "f", 0, "false");
    expect_val(PGS_JSON_BOOL, "", 1, "null");
    expect_val(PGS_JSON_RAW, "{\"a\": [1, 2, {\"b\": null}]}", 0, "{\"a\": [1, 2, {\"b\": null}]}");
    expect_val(PGS_JSON_RAW, "[]", 0, "[]");
    expect_val(PGS_JSON_RAW, "\"str\"", 0, "\"str\"");
    expect_val(PGS_JSON_RAW, "42", 0, "42");
    expect_val(PGS_JSON_RAW, "null", 0, "null");
    expect_val(PGS_JSON_RAW, "{ \"spaced\" :  1 }", 0, "{ \"spaced\" :  1 }");
    expect_val(PGS_JSON_RAW, NULL, 1, "null");
    expect_val(PGS_JSON_STRING, "plain", 0, "\"plain\"");
    expect_val(PGS_JSON_STRING, "", 0, "\"\"");
    expect_val(PGS_JSON_STRING, "", 1, "null");
    expect_val(PGS_JSON_STRING, "{1,2,3}", 0, "\"{1,2,3}\"");
    expect_val(PGS_JSON_STRING, "2024-01-02 03:04:05+00", 0, "\"2024-01-02 03:04:05+00\"");
    expect_val(PGS_JSON_STRING, "\\x00ff", 0, "\"\\\\x00ff\"");
}

/* A whole row rendered from kinds, as stream.c does, parses strictly. */
static void test_value_object(void **state)
{
    (void)state;
    pgs_buf b = PGS_BUF_INIT;
    static const struct {
        const char *key;
        int kind;
        const char *v;
        int isnull;
    } cols[] = {
        {"id", PGS_JSON_NUMBER, "42", 0},
        {"f", PGS_JSON_NUMBER, "NaN", 0},
        {"ok", PGS_JSON_BOOL, "t", 0},
        {"nil", PGS_JSON_STRING, "", 1},
        {"doc", PGS_JSON_RAW, "{\"x\": [1, \"y\"]}", 0},
        {"name \"q\"", PGS_JSON_STRING, "l\xc3\xa9o\n\xf0\x9f\x98\x80", 0},
    };
    pgs_buf_putc(&b, '{');
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        if (i)
            pgs_buf_putc(&b, ',');
        pgs_json_string(&b, cols[i].key, strlen(cols[i].key));
        pgs_buf_putc(&b, ':');
        pgs_json_value(&b, cols[i].kind, cols[i].v, strlen(cols[i].v), cols[i].isnull);
    }
    pgs_buf_putc(&b, '}');
    assert_false(b.oom);
    const char *want =
        "{\"id\":42,\"f\":\"NaN\",\"ok\":true,\"nil\":null,"
        "\"doc\":{\"x\":[1,\"y\"]},\"name \\\"q\\\"\":\"l\xc3\xa9o\\n\xf0\x9f\x98\x80\"}";
    assert_true(tu_json_same(b.data, b.len, want, strlen(want)));
    pgs_buf_free(&b);
}

/* --------------------------------------------------------------- kinds */

/* json (not jsonb) keeps its input's newlines; in NDJSON one value must stay
 * on one line, and raw CR/LF outside strings are plain whitespace. */
static void test_value_json_newlines(void **state)
{
    (void)state;
    pgs_buf b = PGS_BUF_INIT;
    const char *v = "{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1,\n2]\n}";
    assert_int_equal(pgs_json_value(&b, PGS_JSON_RAW_LINES, v, strlen(v), 0), 0);
    assert_null(memchr(b.data, '\n', b.len));
    assert_null(memchr(b.data, '\r', b.len));
    assert_string_equal(b.data, "{   \"a\": \"x\\ny\",    \"b\": [1, 2] }");
    pgs_buf_free(&b);
}

/* Array literals nest as JSON arrays (bounds dropped, quoted elements
 * unescaped, NULL only unquoted); what is not such a literal stays its text;
 * timestamps turn ISO 8601 with a full offset. */
static void test_value_json_arrays_and_timestamps(void **state)
{
    (void)state;
    static const struct {
        int kind;
        const char *in, *out;
    } c[] = {
        {PGS_JSON_ARRAY | PGS_JSON_NUMBER, "{{1,NULL},{3,-4.5}}", "[[1,null],[3,-4.5]]"},
        {PGS_JSON_ARRAY | PGS_JSON_NUMBER, "{NaN,1}", "[\"NaN\",1]"},
        {PGS_JSON_ARRAY | PGS_JSON_STRING, "[0:1]={\"a,b\",\"NULL\"}", "[\"a,b\",\"NULL\"]"},
        {PGS_JSON_ARRAY | PGS_JSON_STRING, "{\"q\\\"\\\\\",null}", "[\"q\\\"\\\\\",null]"},
        {PGS_JSON_ARRAY | PGS_JSON_STRING, "{}", "[]"},
        {PGS_JSON_ARRAY | PGS_JSON_STRING, "{{},{}}", "[[],[]]"},
        {PGS_JSON_ARRAY | PGS_JSON_BOOL, "{t,f}", "[true,false]"},
        {PGS_JSON_ARRAY | PGS_JSON_RAW, "{\"{\\\"k\\\": 1}\"}", "[{\"k\": 1}]"},
        {PGS_JSON_ARRAY | PGS_JSON_NUMBER, "{1,2", "\"{1,2\""}, /* unterminated */
        {PGS_JSON_ARRAY | PGS_JSON_NUMBER, "{1}x", "\"{1}x\""}, /* trailing text */
        {PGS_JSON_ARRAY | PGS_JSON_NUMBER, "{{{{{{{1}}}}}}}", "\"{{{{{{{1}}}}}}}\""}, /* > 6 */
        {PGS_JSON_TIMESTAMP, "2024-01-02 03:04:05+00", "\"2024-01-02T03:04:05+00:00\""},
        {PGS_JSON_TIMESTAMP, "2024-01-02 03:04:05.25-03:30", "\"2024-01-02T03:04:05.25-03:30\""},
        {PGS_JSON_TIMESTAMP, "1900-01-01 00:00:00+05:53:28 BC",
         "\"1900-01-01T00:00:00+05:53:28 BC\""},
        {PGS_JSON_TIMESTAMP, "0044-03-15 10:00:00+01 BC", "\"0044-03-15T10:00:00+01:00 BC\""},
        {PGS_JSON_TIMESTAMP, "infinity", "\"infinity\""},
        {PGS_JSON_TIMESTAMP, "Sat Dec 02 06:16:21 2026", "\"Sat Dec 02 06:16:21 2026\""},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        pgs_buf b = PGS_BUF_INIT;
        assert_int_equal(pgs_json_value(&b, c[i].kind, c[i].in, strlen(c[i].in), 0), 0);
        if (strcmp(b.data, c[i].out) != 0)
            fail_msg("%s: got %s, want %s", c[i].in, b.data, c[i].out);
        pgs_buf_free(&b);
    }
}

static void test_kind_oids(void **state)
{
    (void)state;
    static const struct {
        unsigned oid;
        int kind;
    } k[] = {
        {21, PGS_JSON_NUMBER},                       /* int2 */
        {23, PGS_JSON_NUMBER},                       /* int4 */
        {20, PGS_JSON_NUMBER},                       /* int8 */
        {26, PGS_JSON_STRING},                       /* oid: to_json quotes it */
        {700, PGS_JSON_NUMBER},                      /* float4 */
        {701, PGS_JSON_NUMBER},                      /* float8 */
        {1700, PGS_JSON_NUMBER},                     /* numeric */
        {16, PGS_JSON_BOOL},                         /* bool */
        {114, PGS_JSON_RAW_LINES},                   /* json: CR/LF flattened */
        {3802, PGS_JSON_RAW},                        /* jsonb */
        {25, PGS_JSON_STRING},                       /* text */
        {1043, PGS_JSON_STRING},                     /* varchar */
        {1042, PGS_JSON_STRING},                     /* bpchar */
        {19, PGS_JSON_STRING},                       /* name */
        {17, PGS_JSON_STRING},                       /* bytea */
        {1082, PGS_JSON_STRING},                     /* date */
        {1114, PGS_JSON_TIMESTAMP},                  /* timestamp: ISO 8601, as to_json */
        {1184, PGS_JSON_TIMESTAMP},                  /* timestamptz */
        {1186, PGS_JSON_STRING},                     /* interval */
        {2950, PGS_JSON_STRING},                     /* uuid */
        {790, PGS_JSON_STRING},                      /* money: "$1.00" is not a number */
        {1007, PGS_JSON_ARRAY | PGS_JSON_NUMBER},    /* int4[]: a JSON array */
        {3807, PGS_JSON_ARRAY | PGS_JSON_RAW},       /* jsonb[] */
        {199, PGS_JSON_ARRAY | PGS_JSON_RAW_LINES},  /* json[] */
        {1185, PGS_JSON_ARRAY | PGS_JSON_TIMESTAMP}, /* timestamptz[] */
        {1028, PGS_JSON_ARRAY | PGS_JSON_STRING},    /* oid[] */
        {3904, PGS_JSON_STRING},                     /* int4range */
        {4451, PGS_JSON_STRING},                     /* int4multirange */
        {3905, PGS_JSON_ARRAY | PGS_JSON_STRING},    /* int4range[] */
        {1020, PGS_JSON_TREE},                       /* box[]: ';' between elements */
        {22, PGS_JSON_TREE},                         /* int2vector: "1 2" */
        {1006, PGS_JSON_TREE},                       /* int2vector[] */
        {2249, PGS_JSON_TREE},                       /* record */
        {2287, PGS_JSON_TREE},                       /* record[] */
        {83, PGS_JSON_UNRESOLVED},                   /* pg_class: a composite */
        {16384, PGS_JSON_UNRESOLVED},                /* user types: the catalog */
        {0, PGS_JSON_UNRESOLVED},
        {4294967295u, PGS_JSON_UNRESOLVED},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (pgs_json_kind(k[i].oid) != k[i].kind)
            fail_msg("pgs_json_kind(%u) = %d, want %d", k[i].oid, pgs_json_kind(k[i].oid),
                     k[i].kind);
}

/* ------------------------------------------------------------ type trees */

/* Render v with tree t; check validity; compare with want. */
static void expect_tree(const pgs_jtype *t, const char *v, const char *want, int mismatch)
{
    pgs_buf b = PGS_BUF_INIT;
    pgs_jscratch sc;
    memset(&sc, 0, sizeof sc);
    assert_int_equal(pgs_json_tree(&b, t, v, strlen(v), &sc), 0);
    if (!tu_json_valid(b.data, b.len))
        fail_msg("pgs_json_tree(%s) is not valid JSON: %s", v, b.data ? b.data : "(empty)");
    if (strcmp(b.data, want))
        fail_msg("pgs_json_tree(\"%s\") = %s, want %s", v, b.data, want);
    if (sc.mismatch != mismatch)
        fail_msg("pgs_json_tree(\"%s\"): mismatch %d, want %d", v, sc.mismatch, mismatch);
    pgs_jscratch_free(&sc);
    pgs_buf_free(&b);
}

static pgs_jfield field(const char *key, const pgs_jtype *t)
{
    return (pgs_jfield){(char *)key, strlen(key), t};
}

static void test_tree_composite(void **state)
{
    (void)state;
    static const pgs_jtype num = {23, PGS_JSON_NUMBER, ',', NULL, 0, NULL};
    static const pgs_jtype str = {25, PGS_JSON_STRING, ',', NULL, 0, NULL};
    static const pgs_jtype ts = {1184, PGS_JSON_TIMESTAMP, ',', NULL, 0, NULL};
    static const pgs_jtype jb = {3802, PGS_JSON_RAW, ',', NULL, 0, NULL};
    static const pgs_jtype bl = {16, PGS_JSON_BOOL, ',', NULL, 0, NULL};
    pgs_jfield inner_f[] = {field("\"a\":", &num), field("\"b\":", &str)};
    pgs_jtype inner = {16400, PGS_JT_COMPOSITE, ',', NULL, 2, inner_f};
    pgs_jtype arr_inner = {16401, PGS_JT_ARRAY, ',', &inner, 0, NULL};
    pgs_jtype arr_num = {1007, PGS_JT_ARRAY, ',', &num, 0, NULL};
    pgs_jfield outer_f[] = {field("\"i\":", &inner),   field("\"l\":", &arr_inner),
                            field("\"n\":", &arr_num), field("\"t\":", &ts),
                            field("\"j\":", &jb),      field("\"q\":", &bl)};
    pgs_jtype outer = {16402, PGS_JT_COMPOSITE, ',', NULL, 6, outer_f};

    expect_tree(&inner, "(1,x)", "{\"a\":1,\"b\":\"x\"}", 0);
    expect_tree(&inner, "(,)", "{\"a\":null,\"b\":null}", 0);
    expect_tree(&inner, "(-5,\"\")", "{\"a\":-5,\"b\":\"\"}", 0); /* "" is not NULL */
    /* record_out quotes with "" and \\ inside quotes; record_in reads \x too */
    expect_tree(&inner, "(2,\"a \"\"q\"\" \\\\ b,(c)\")",
                "{\"a\":2,\"b\":\"a \\\"q\\\" \\\\ b,(c)\"}", 0);
    expect_tree(&inner, "(3,\"x\\\"y\")", "{\"a\":3,\"b\":\"x\\\"y\"}", 0);
    /* nested: a composite and an array of composites inside one */
    /* nested: a composite and an array of composites inside one (the
     * server's text of ROW(ROW(1,'y z'), ARRAY[ROW(2,'a'), NULL,
     * ROW(NULL,'"\\')], '[0:1]={7,NULL}'::int[], timestamptz, jsonb, true)) */
    expect_tree(
        &outer,
        "(\"(1,\"\"y "
        "z\"\")\",\"{\"\"(2,a)\"\",NULL,\"\"(,\\\\\"\"\\\\\"\"\\\\\"\"\\\\\\\\\\\\\\\\\\\\\"\")"
        "\"\"}\",\"[0:1]={7,NULL}\",\"2024-01-01 21:34:05+00\",\"{\"\"k\"\": [1]}\",t)",
        "{\"i\":{\"a\":1,\"b\":\"y "
        "z\"},\"l\":[{\"a\":2,\"b\":\"a\"},null,{\"a\":null,\"b\":\"\\\"\\\\\"}],\"n\":[7,null],"
        "\"t\":\"2024-01-01T21:34:05+00:00\",\"j\":{\"k\": [1]},\"q\":true}",
        0);
    /* not the type's shape (a field more or less, no parentheses): its text */
    expect_tree(&inner, "(1,x,y)", "\"(1,x,y)\"", 1);
    expect_tree(&inner, "(1)", "\"(1)\"", 1);
    expect_tree(&inner, "1,x", "\"1,x\"", 1);
    expect_tree(&inner, "(1,\"x)", "\"(1,\\\"x)\"", 1);
    /* an empty composite type */
    pgs_jtype none = {16403, PGS_JT_COMPOSITE, ',', NULL, 0, NULL};
    expect_tree(&none, "()", "{}", 0);
}

static void test_tree_arrays(void **state)
{
    (void)state;
    static const pgs_jtype str = {603, PGS_JSON_STRING, ',', NULL, 0, NULL};
    static const pgs_jtype i2 = {21, PGS_JSON_NUMBER, ',', NULL, 0, NULL};
    static const pgs_jtype oid = {26, PGS_JSON_STRING, ',', NULL, 0, NULL};
    pgs_jtype box = {1020, PGS_JT_ARRAY, ';', &str, 0, NULL};
    expect_tree(&box, "{(1,1),(0,0);(3,3),(2,2)}", "[\"(1,1),(0,0)\",\"(3,3),(2,2)\"]", 0);
    expect_tree(&box, "{{(1,1),(0,0)};{NULL}}", "[[\"(1,1),(0,0)\"],[null]]", 0);
    pgs_jtype v2 = {22, PGS_JT_VECTOR, ' ', &i2, 0, NULL};
    pgs_jtype vo = {30, PGS_JT_VECTOR, ' ', &oid, 0, NULL};
    expect_tree(&v2, "1 -2 3", "[1,-2,3]", 0);
    expect_tree(&v2, "", "[]", 0);
    expect_tree(&vo, "1 2", "[\"1\",\"2\"]", 0);
    expect_tree(&v2, "1  2", "\"1  2\"", 1);
    pgs_jtype av = {1006, PGS_JT_ARRAY, ',', &v2, 0, NULL};
    expect_tree(&av, "{\"1 2\",\"3\",NULL}", "[[1,2],[3],null]", 0);
    expect_tree(&av, "{\"1 2\"", "\"{\\\"1 2\\\"\"", 1);
    /* no delimiter between elements or levels: not an array literal */
    expect_tree(&av, "{\"1\"]}", "\"{\\\"1\\\"]}\"", 1);
    expect_tree(&box, "{{a}{b}}", "\"{{a}{b}}\"", 1);
    expect_tree(&box, "}", "\"}\"", 1);
    expect_tree(&box, "{h;}", "\"{h;}\"", 1);
    expect_tree(&box, "[1:1]=}", "\"[1:1]=}\"", 1);
    /* records and anyarray: their text, by design (not a mismatch) */
    pgs_jtype rec = {2249, PGS_JT_RECORD, ',', NULL, 0, NULL};
    expect_tree(&rec, "(1,x)", "\"(1,x)\"", 0);
    pgs_jtype arec = {2287, PGS_JT_ARRAY, ',', &rec, 0, NULL};
    expect_tree(&arec, "{\"(1,\\\"a b\\\")\",NULL}", "[\"(1,\\\"a b\\\")\",null]", 0);
}

/* The catalog's rows (as the lookup query returns them) make the trees:
 * domains become their base, composites objects, arrays of enums arrays of
 * strings; without the catalog, only the built-in table. */
static void test_jtypes_catalog(void **state)
{
    (void)state;
    pgs_jtypes jt;
    memset(&jt, 0, sizeof jt);
    pgs_typecache cache = {0};
    /* built-in only: no lookup, composites and user types unresolved */
    const pgs_jtype *t;
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 23, &t), PGS_JSON_NUMBER);
    assert_null(t);
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 1020, &t), PGS_JSON_TREE);
    assert_int_equal(t->kind, PGS_JT_ARRAY);
    assert_int_equal(t->delim, ';');
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 16500, &t), PGS_JSON_UNRESOLVED);

    /* option json: 16500 a composite (x pgs_dom, y pgs_enum[]), 16501 a
     * domain over int4, 16502 an enum, 16503 its array */
    jt.catalog = 1;
    unsigned cols[] = {23, 16500, 16503, 1007};
    assert_int_equal(pgs_jtypes_need(&jt, &cache, cols, 4), 2);
    assert_int_equal(jt.need[0], 16500);
    assert_int_equal(jt.need[1], 16503);
    char *sql = pgs_jtypes_sql(&jt, 150000);
    assert_non_null(sql);
    assert_non_null(strstr(sql, "'{16500,16503}'::pg_catalog.oid[]"));
    assert_non_null(strstr(sql, "array_subscript_handler"));
    free(sql);
    sql = pgs_jtypes_sql(&jt, 130000);
    assert_null(strstr(sql, "typsubscript"));
    free(sql);
#define ROW(...)                                                                                   \
    do {                                                                                           \
        const char *v[PGS_JTYPES_NCOLS] = {__VA_ARGS__};                                           \
        assert_int_equal(pgs_jtypes_row(&jt, &cache, v), 0);                                       \
    } while (0)
    ROW("16500", "c", "0", "0", NULL, "f", NULL, NULL);
    ROW("16500", NULL, "16501", NULL, NULL, NULL, "1", "x");
    ROW("16500", NULL, "16503", NULL, NULL, NULL, "3", "y \"q\"");
    ROW("16501", "d", "0", "23", NULL, "f", NULL, NULL);
    ROW("16502", "e", "0", "0", NULL, "f", NULL, NULL);
    ROW("16503", "b", "16502", "0", ",", "f", NULL, NULL);
    const char *bad[PGS_JTYPES_NCOLS] = {"x", "b", "0", "0", NULL, "f", NULL, NULL};
    assert_int_equal(pgs_jtypes_row(&jt, &cache, bad), -1);
    assert_int_equal(cache.n, 4);

    assert_int_equal(pgs_jtypes_column(&jt, &cache, 16500, &t), PGS_JSON_TREE);
    expect_tree(t, "(5,\"{ok,NULL}\")", "{\"x\":5,\"y \\\"q\\\"\":[\"ok\",null]}", 0);
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 16501, &t), PGS_JSON_TREE);
    expect_tree(t, "7", "7", 0); /* the domain is its base */
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 16599, &t), PGS_JSON_UNRESOLVED);
    /* a composite said to contain itself (PostgreSQL refuses those): its
     * tree refers to itself, and rendering stops at PGS_JT_DEPTH */
    ROW("16600", "c", "0", "0", NULL, "f", NULL, NULL);
    ROW("16600", NULL, "16600", NULL, NULL, NULL, "1", "me");
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 16600, &t), PGS_JSON_TREE);
    assert_ptr_equal(t->fields[0].type, t);
    expect_tree(t, "(\"(\"\"(x)\"\")\")", "{\"me\":{\"me\":{\"me\":\"x\"}}}", 1);
    expect_tree(t, "(\"(x,y)\")", "{\"me\":\"(x,y)\"}", 1);
    pgs_jtypes_free(&jt);

    /* the next stream: the cache knows the domain, the enum and its array;
     * the composite's fields are asked again */
    memset(&jt, 0, sizeof jt);
    jt.catalog = 1;
    unsigned cols2[] = {16501, 16503};
    assert_int_equal(pgs_jtypes_need(&jt, &cache, cols2, 2), 0);
    assert_int_equal(pgs_jtypes_column(&jt, &cache, 16503, &t), PGS_JSON_TREE);
    expect_tree(t, "{a,b}", "[\"a\",\"b\"]", 0);
    assert_int_equal(pgs_jtypes_need(&jt, &cache, cols, 4), 1);
    pgs_jtypes_free(&jt);
    free(cache.t);
#undef ROW
}

/* ----------------------------------------------------------------- buf */

static void test_buf(void **state)
{
    (void)state;
    pgs_buf b = PGS_BUF_INIT;
    char *empty = pgs_buf_steal(&b);
    assert_non_null(empty);
    assert_string_equal(empty, "");
    free(empty);

    assert_int_equal(pgs_buf_append(&b, "abc", 3), 0);
    assert_int_equal(pgs_buf_putc(&b, 'd'), 0);
    assert_int_equal(pgs_buf_puts(&b, "ef"), 0);
    assert_int_equal(pgs_buf_printf(&b, "-%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "abcdef-42-x");
    assert_int_equal(b.len, 11);
    /* printf longer than any small internal buffer */
    char big[3000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(pgs_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 11 + 2 + sizeof big - 1);
    assert_int_equal(strlen(b.data), b.len);
    assert_int_equal(b.data[11], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    size_t cap = b.cap;
    pgs_buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(b.cap, cap);
    assert_int_equal(pgs_buf_append(&b, "\0x", 2), 0); /* binary safe */
    assert_int_equal(b.len, 2);
    assert_int_equal(b.data[1], 'x');
    char *s = pgs_buf_steal(&b);
    assert_non_null(s);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    free(s);
    /* many small appends */
    for (int i = 0; i < 100000; i++)
        assert_int_equal(pgs_buf_putc(&b, (char)('a' + i % 26)), 0);
    assert_int_equal(b.len, 100000);
    assert_int_equal(b.data[99999], 'a' + 99999 % 26);
    assert_int_equal(b.data[100000], 0);
    pgs_buf_free(&b);
    pgs_buf_free(&b); /* twice is fine */
    /* reserve that cannot be met sets the sticky oom flag */
    assert_int_equal(pgs_buf_reserve(&b, SIZE_MAX - 16), -1);
    assert_int_equal(b.oom, 1);
    assert_int_equal(pgs_buf_append(&b, "x", 1), -1);
    assert_null(pgs_buf_steal(&b));
    pgs_buf_free(&b);
}

/* ---------------------------------------------------- the test validator */

/* The validator used across the suites must itself be strict. */
static void test_validator_self_check(void **state)
{
    (void)state;
    static const char *const good[] = {
        "0",
        "-0",
        "1.5e10",
        "\"\"",
        "\"\\u00e9\\ud83d\\ude00\"",
        "[]",
        "{}",
        " [1, {\"a\":null}] ",
        "true",
        "false",
        "null",
        "\"\xf0\x9f\x98\x80\"",
    };
    static const char *const bad[] = {
        "",
        "01",
        "1.",
        ".5",
        "+1",
        "NaN",
        "Infinity",
        "[1,]",
        "{\"a\":1,}",
        "{a:1}",
        "'x'",
        "\"\x01\"",
        "\"\\x\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "[1] [2]",
        "tru",
        "nul",
        "\"abc",
        "[",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!tu_json_valid(good[i], strlen(good[i])))
            fail_msg("validator rejects %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (tu_json_valid(bad[i], strlen(bad[i])))
            fail_msg("validator accepts %s", bad[i]);
    const char *x = "{ \"a\" : \"\\u0041\\n\" }", *y = "{\"a\":\"A\\u000a\"}";
    assert_true(tu_json_same(x, strlen(x), y, strlen(y)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validator_self_check),
        cmocka_unit_test(test_string_plain),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_string_unicode),
        cmocka_unit_test(test_string_invalid_utf8),
        cmocka_unit_test(test_string_large_and_append),
        cmocka_unit_test(test_value_numbers),
        cmocka_unit_test(test_value_bools_null_raw),
        cmocka_unit_test(test_value_object),
        cmocka_unit_test(test_value_json_newlines),
        cmocka_unit_test(test_value_json_arrays_and_timestamps),
        cmocka_unit_test(test_kind_oids),
        cmocka_unit_test(test_tree_composite),
        cmocka_unit_test(test_tree_arrays),
        cmocka_unit_test(test_jtypes_catalog),
        cmocka_unit_test(test_buf),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
