/* fuzz_json.c - the JSON renderer on arbitrary bytes (core/src/json.c).
 *
 * Input: byte 0 picks the kind (bits 0-1: string, number, bool, raw) and
 * NULL (bit 2); the rest is the value. Bytes already in the buffer (bit 3:
 * a prefix) exercise its growth.
 *
 * Checked:
 *  - pgs_json_string always gives one valid JSON string (strict RFC 8259,
 *    well-formed UTF-8); decoded, it equals the input with every byte that
 *    does not start a well-formed UTF-8 sequence replaced by U+FFFD
 *  - pgs_json_value: NULL -> null; bool -> true/false; a number that is a
 *    JSON number stays as it is, NaN/Infinity/-Infinity become strings; a
 *    string kind is valid JSON; raw passes through byte for byte
 *  - the buffer stays NUL-terminated and its length is right
 *  - pgs_json_tree (composites, arrays with ',' and ';', vectors, records,
 *    nested, of string-like kinds) always gives exactly one valid JSON
 *    value, whatever the text: its structure, or a string of it
 */
#include "json.h"
#include "json_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_json: check failed: %s (line %d)\n", #cond, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* What pgs_json_string's decoded output must be. */
static size_t reference(const unsigned char *s, size_t n, char *out)
{
    size_t o = 0, i = 0;
    while (i < n) {
        size_t l = fz_utf8_seq(s + i, n - i);
        if (l == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int kind = data[0] & 3, isnull = (data[0] >> 2) & 1, prefix = (data[0] >> 3) & 1;
    const char *v = (const char *)data + 1;
    size_t n = size - 1;

    /* 1: the string renderer, always */
    pgs_buf b = PGS_BUF_INIT;
    if (prefix)
        CHECK(pgs_buf_puts(&b, "[1,") == 0);
    size_t start = b.len;
    CHECK(pgs_json_string(&b, v, n) == 0);
    CHECK(b.data != NULL && b.data[b.len] == '\0');
    const char *js = b.data + start;
    size_t jl = b.len - start;
    CHECK(fz_json_valid(js, jl));
    CHECK(fz_utf8_valid((const unsigned char *)js, jl));
    char *dec = malloc(jl + 1), *ref = malloc(n * 3 + 1);
    long dl = fz_json_string_decode(js, jl, dec);
    CHECK(dl >= 0);
    size_t rl = reference((const unsigned char *)v, n, ref);
    CHECK((size_t)dl == rl && memcmp(dec, ref, rl) == 0);
    free(dec);
    free(ref);

    /* 2: a value of the chosen kind, appended after it */
    size_t before = b.len;
    static const int kinds[4] = {PGS_JSON_STRING, PGS_JSON_NUMBER, PGS_JSON_BOOL, PGS_JSON_RAW};
    CHECK(pgs_json_value(&b, kinds[kind], v, n, isnull) == 0);
    CHECK(b.data[b.len] == '\0');
    const char *out = b.data + before;
    size_t ol = b.len - before;
    if (isnull) {
        CHECK(ol == 4 && memcmp(out, "null", 4) == 0);
    } else {
        switch (kinds[kind]) {
        case PGS_JSON_STRING: CHECK(fz_json_valid(out, ol) && out[0] == '"'); break;
        case PGS_JSON_BOOL:
            CHECK((ol == 4 && memcmp(out, "true", 4) == 0) ||
                  (ol == 5 && memcmp(out, "false", 5) == 0));
            CHECK((ol == 4) == (n == 1 && v[0] == 't'));
            break;
        case PGS_JSON_NUMBER:
            if ((n == 3 && memcmp(v, "NaN", 3) == 0) || (n == 8 && memcmp(v, "Infinity", 8) == 0) ||
                (n == 9 && memcmp(v, "-Infinity", 9) == 0)) {
                CHECK(ol == n + 2 && out[0] == '"' && memcmp(out + 1, v, n) == 0);
            } else {
                /* numbers come from the server as text and are trusted: what
                 * is a JSON number stays one, unchanged */
                CHECK(ol == n && memcmp(out, v, n) == 0);
                if (fz_json_number(v, n))
                    CHECK(fz_json_valid(out, ol));
            }
            break;
        case PGS_JSON_RAW: CHECK(ol == n && memcmp(out, v, n) == 0); break;
        }
    }
    pgs_buf_free(&b);

    /* 4: a type tree of kinds whose output is valid JSON for any text
     * (numbers and raw json are the server's, trusted) */
    {
        static const pgs_jtype str = {25, PGS_JSON_STRING, ',', NULL, 0, NULL};
        static const pgs_jtype bl = {16, PGS_JSON_BOOL, ',', NULL, 0, NULL};
        static const pgs_jtype ts = {1184, PGS_JSON_TIMESTAMP, ',', NULL, 0, NULL};
        static const pgs_jtype rec = {2249, PGS_JT_RECORD, ',', NULL, 0, NULL};
        static pgs_jfield inner_f[] = {{"\"a\":", 4, &str}, {"\"b\":", 4, &ts}};
        static const pgs_jtype inner = {16400, PGS_JT_COMPOSITE, ',', NULL, 2, inner_f};
        static const pgs_jtype arr = {16401, PGS_JT_ARRAY, ',', &inner, 0, NULL};
        static const pgs_jtype box = {1020, PGS_JT_ARRAY, ';', &str, 0, NULL};
        static const pgs_jtype vec = {30, PGS_JT_VECTOR, ' ', &str, 0, NULL};
        static const pgs_jtype arec = {2287, PGS_JT_ARRAY, ',', &rec, 0, NULL};
        static pgs_jfield outer_f[] = {{"\"i\":", 4, &inner}, {"\"l\":", 4, &arr},
                                       {"\"x\":", 4, &box},   {"\"v\":", 4, &vec},
                                       {"\"q\":", 4, &bl},    {"\"r\":", 4, &arec}};
        static const pgs_jtype outer = {16402, PGS_JT_COMPOSITE, ',', NULL, 6, outer_f};
        static const pgs_jtype *const trees[4] = {&outer, &arr, &box, &vec};
        pgs_buf t = PGS_BUF_INIT;
        pgs_jscratch sc;
        memset(&sc, 0, sizeof sc);
        CHECK(pgs_json_tree(&t, trees[kind], v, n, &sc) == 0);
        CHECK(t.data != NULL && t.data[t.len] == '\0');
        CHECK(fz_json_valid(t.data, t.len));
        CHECK(fz_utf8_valid((const unsigned char *)t.data, t.len));
        pgs_jscratch_free(&sc);
        pgs_buf_free(&t);
    }

    /* 3: pgs_buf_steal hands over a terminated copy */
    pgs_buf c = PGS_BUF_INIT;
    CHECK(pgs_json_string(&c, v, n) == 0);
    size_t cl = c.len;
    char *stolen = pgs_buf_steal(&c);
    CHECK(stolen != NULL && strlen(stolen) == cl && c.data == NULL && c.len == 0);
    free(stolen);
    return 0;
}
