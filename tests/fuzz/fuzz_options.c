/* fuzz_options.c - the option parser (core/src/options.c).
 *
 * Input: "key\0value", else "key=value", else byte 0 picks a known key and
 * the rest is the value. The whole input (as a C string) also goes to the
 * unit parsers.
 *
 * Checked:
 *  - pgs_parse_size / _duration_ms / _bool: results in range (sizes and
 *    durations >= 0, a positive duration is never 0 = "no limit", booleans
 *    0/1); anything they accept starts with a digit, '+' or '.' (no
 *    whitespace, no sign, no hex)
 *  - pgspout_options_set returns OK, EOPTION or EVALUE; the message is
 *    bounded; a failed set changes nothing (every key's value is the same)
 *  - after a successful set, what pgspout_options_get renders can be set
 *    again and renders the same (the options round-trip through text)
 */
#include "options.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_options: check failed: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const keys[] = {"chunk_rows",
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
                                   "cancel_timeout",
                                   "metrics",
                                   "progress_rows",
                                   "progress_interval",
                                   "idle_timeout",
                                   "connect_timeout",
                                   "keepalives_idle",
                                   "keepalives_interval",
                                   "keepalives_count",
                                   "tcp_user_timeout",
                                   "application_name",
                                   "arrow"};
#define NKEYS (sizeof keys / sizeof keys[0])

typedef struct snap {
    char v[NKEYS][128];
} snap;

static void snapshot(const pgspout_options *o, snap *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < NKEYS; i++) {
        const char *g = pgspout_options_get(o, keys[i]);
        CHECK(g != NULL);
        snprintf(s->v[i], sizeof s->v[i], "%s", g);
    }
}

static int starts_ok(const char *s) { return (*s >= '0' && *s <= '9') || *s == '+' || *s == '.'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    char *buf = malloc(size + 2);
    memcpy(buf, data, size);
    buf[size] = buf[size + 1] = '\0';

    /* the unit parsers on the whole input */
    int64_t v = -12345;
    int b = -1;
    if (pgs_parse_size(buf, &v) == 0) {
        CHECK(v >= 0);
        CHECK(starts_ok(buf));
    }
    v = -12345;
    if (pgs_parse_duration_ms(buf, &v) == 0) {
        CHECK(v >= 0);
        CHECK(starts_ok(buf));
        /* "0.0001s" is a positive duration: it must not become 0 (= none) */
        int positive = 0;
        for (const char *p = buf; *p && ((*p >= '0' && *p <= '9') || *p == '.' || *p == '+'); p++)
            if (*p >= '1' && *p <= '9')
                positive = 1;
        if (positive)
            CHECK(v > 0);
    }
    if (pgs_parse_bool(buf, &b) == 0)
        CHECK(b == 0 || b == 1);

    /* key and value */
    const char *key, *value;
    char *nul = memchr(buf, '\0', size);
    char *eq = memchr(buf, '=', size);
    if (nul && nul < buf + size) {
        key = buf;
        value = nul + 1;
    } else if (eq) {
        *eq = '\0';
        key = buf;
        value = eq + 1;
    } else {
        key = keys[(unsigned char)buf[0] % NKEYS];
        value = buf + 1;
    }

    pgspout_options *o = pgspout_options_new();
    CHECK(o != NULL);
    snap before, after;
    snapshot(o, &before);
    int rc = pgspout_options_set(o, key, value);
    CHECK(rc == PGSPOUT_OK || rc == PGSPOUT_EOPTION || rc == PGSPOUT_EVALUE);
    const char *err = pgspout_options_error(o);
    CHECK(err != NULL && strlen(err) < 256);
    snapshot(o, &after);
    if (rc != PGSPOUT_OK) {
        CHECK(*err != '\0');
        CHECK(memcmp(&before, &after, sizeof before) == 0);
        if (rc == PGSPOUT_EOPTION)
            CHECK(pgspout_options_get(o, key) == NULL);
    } else {
        CHECK(*err == '\0');
        const char *g = pgspout_options_get(o, key);
        CHECK(g != NULL);
        char text[128];
        snprintf(text, sizeof text, "%s", g);
        /* only this key changed */
        for (size_t i = 0; i < NKEYS; i++)
            if (strcmp(keys[i], key) != 0)
                CHECK(strcmp(before.v[i], after.v[i]) == 0);
        /* round trip through text: get -> set -> get */
        pgspout_options *o2 = pgspout_options_new();
        int rc2 = pgspout_options_set(o2, key, text);
        if (rc2 != PGSPOUT_OK)
            fprintf(stderr,
                    "fuzz_options: set(%s, \"%s\") was OK but its get text \"%s\" "
                    "is refused: %s\n",
                    key, value, text, pgspout_options_error(o2));
        CHECK(rc2 == PGSPOUT_OK);
        const char *g2 = pgspout_options_get(o2, key);
        CHECK(g2 != NULL && strcmp(g2, text) == 0);
        pgspout_options_free(o2);
    }
    pgspout_options_free(o);
    free(buf);
    return 0;
}
