/* json.c - JSON rendering of values and rows. */
#include "json.h"
#include "pgspout.h"

#include <string.h>

int pgs_json_kind(unsigned int oid)
{
    switch (pgspout_type_kind(oid)) {
    case PGSPOUT_KIND_INT:
    case PGSPOUT_KIND_INT8:
    case PGSPOUT_KIND_FLOAT:
    case PGSPOUT_KIND_NUMERIC: return PGS_JSON_NUMBER;
    case PGSPOUT_KIND_BOOL: return PGS_JSON_BOOL;
    case PGSPOUT_KIND_JSON: /* json keeps its input's whitespace, jsonb has none */
        return oid == 114 ? PGS_JSON_RAW_LINES : PGS_JSON_RAW;
    default: return PGS_JSON_STRING;
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned int cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

int pgs_json_string(pgs_buf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    /* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
    if (pgs_buf_reserve(b, n * 6 + 2) != 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
            continue;
        }
        if (c < 0x80) {
            *o++ = '\\';
            switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
            i++;
            continue;
        }
        size_t len = utf8_len(s + i, n - i);
        if (len == 0) { /* U+FFFD replacement character */
            *o++ = (char)0xEF;
            *o++ = (char)0xBF;
            *o++ = (char)0xBD;
            i++;
            continue;
        }
        memcpy(o, s + i, len);
        o += len;
        i += len;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

static int is_nonfinite(const char *v, size_t n)
{
    /* PostgreSQL spells them NaN, Infinity, -Infinity */
    return (n == 3 && memcmp(v, "NaN", 3) == 0) || (n == 8 && memcmp(v, "Infinity", 8) == 0) ||
           (n == 9 && memcmp(v, "-Infinity", 9) == 0);
}

int pgs_json_value(pgs_buf *b, int kind, const char *v, size_t n, int isnull)
{
    if (isnull)
        return pgs_buf_append(b, "null", 4);
    switch (kind) {
    case PGS_JSON_NUMBER:
        if (is_nonfinite(v, n))
            return pgs_json_string(b, v, n);
        return pgs_buf_append(b, v, n);
    case PGS_JSON_BOOL:
        return n == 1 && v[0] == 't' ? pgs_buf_append(b, "true", 4) : pgs_buf_append(b, "false", 5);
    case PGS_JSON_RAW: return pgs_buf_append(b, v, n);
    case PGS_JSON_RAW_LINES: {
        /* raw CR/LF can only be whitespace between tokens in valid JSON
         * (inside strings they must be escaped), so spaces are equivalent */
        size_t at = b->len;
        if (pgs_buf_append(b, v, n) != 0)
            return -1;
        for (char *p = b->data + at; (p = memchr(p, '\n', n - (size_t)(p - (b->data + at))));)
            *p = ' ';
        for (char *p = b->data + at; (p = memchr(p, '\r', n - (size_t)(p - (b->data + at))));)
            *p = ' ';
        return 0;
    }
    default: return pgs_json_string(b, v, n);
    }
}
