/* fuzz_sqlwrap.c - option json's statement rewrite on arbitrary SQL text
 * (core/src/jsonwrap.c).
 *
 * Input: byte 0 bit 0 is standard_conforming_strings, bits 1-3 the number
 * of columns (1-8), bit 4 which of them to_json wraps (alternate ones or
 * all); the rest is the SQL (up to its first NUL) and, after that NUL, the
 * columns' names separated by NULs (missing names are empty).
 *
 * Checked:
 *  - pgs_json_query_len never reads past the SQL and returns at most its
 *    length; what it cuts off is only white space, comments and ';'
 *    (nothing else but those characters' own bytes: the cut never ends
 *    inside a token)
 *  - pgs_json_wrap gives a NUL-terminated statement that starts with
 *    "SELECT ", holds sql[0..len) verbatim between "FROM (\n" and
 *    "\n) AS pgspout_q(", ends with ")" and quotes every name (each '"'
 *    doubled)
 */
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_sqlwrap: check failed: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int scs = data[0] & 1, ncols = ((data[0] >> 1) & 7) + 1, all = (data[0] >> 4) & 1;
    char *in = malloc(size + 1); /* exactly the input, NUL-terminated */
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    const char *sql = in;
    size_t sl = strlen(sql);

    size_t len = pgs_json_query_len(sql, scs);
    CHECK(len <= sl);
    if (len > 0) /* the cut: blanks, comments and ';' only */
        CHECK(len == sl || strchr(" \t\n\r\f\v;-/", sql[len]) != NULL);

    const char *names[8];
    unsigned char server[8];
    const char *p = sql + sl, *end = in + size - 1;
    for (int c = 0; c < ncols; c++) {
        names[c] = p < end ? p + 1 : "";
        if (p < end)
            p += strlen(p + 1) + 1;
        server[c] = all || c % 2 == 0;
    }
    size_t wl = len ? len : sl;
    char *w = pgs_json_wrap(sql, wl, ncols, names, server);
    CHECK(w != NULL);
    CHECK(strncmp(w, "SELECT ", 7) == 0);
    /* from the end: ")" after the aliases "c1, c2, ...", the SQL before */
    char aliases[64] = "";
    for (int c = 0; c < ncols; c++)
        snprintf(aliases + strlen(aliases), sizeof aliases - strlen(aliases), "%sc%d",
                 c ? ", " : "", c + 1);
    size_t n = strlen(w), al = strlen(aliases);
    CHECK(n > 8 + wl + 16 + al + 1 + 7);
    CHECK(w[n - 1] == ')' && memcmp(w + n - 1 - al, aliases, al) == 0);
    const char *from = w + n - 1 - al - 16 - wl - 8;
    CHECK(strncmp(from, " FROM (\n", 8) == 0);
    CHECK(memcmp(from + 8, sql, wl) == 0);
    CHECK(strncmp(from + 8 + wl, "\n) AS pgspout_q(", 16) == 0);
    /* the select list: each name quoted, with its quotes doubled */
    const char *q = w + 7;
    for (int c = 0; c < ncols; c++) {
        q = strstr(q, " AS \""); /* the names before are behind q */
        CHECK(q != NULL && q < from);
        q += 5;
        for (const char *s = names[c]; *s; s++, q++) {
            CHECK(*q == *s);
            if (*s == '"')
                CHECK(*++q == '"');
        }
        CHECK(*q == '"');
    }
    free(w);
    free(in);
    return 0;
}
