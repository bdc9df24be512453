/* json.c - JSON rendering of values and rows. */
#include "json.h"
#include "pgspout.h"

#include <string.h>
#include <strings.h>

/* How PostgreSQL's to_json renders a value: by its type's kind. */
int pgs_json_kind(unsigned int oid)
{
    int kind = pgspout_type_kind(oid), array = kind & PGSPOUT_KIND_ARRAY ? PGS_JSON_ARRAY : 0;
    switch (kind & 0xff) {
    case PGSPOUT_KIND_INT:
    case PGSPOUT_KIND_INT8:
    case PGSPOUT_KIND_FLOAT:
    case PGSPOUT_KIND_NUMERIC: return array | PGS_JSON_NUMBER;
    case PGSPOUT_KIND_BOOL: return array | PGS_JSON_BOOL;
    case PGSPOUT_KIND_TIMESTAMP:
    case PGSPOUT_KIND_TIMESTAMPTZ: return array | PGS_JSON_TIMESTAMP;
    case PGSPOUT_KIND_JSON: /* json keeps its input's whitespace, jsonb has none */
        return array | (oid == 114 || oid == 199 ? PGS_JSON_RAW_LINES : PGS_JSON_RAW);
    default: return array | PGS_JSON_STRING;
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

/* DateStyle ISO's "2026-12-02 06:16:21.643+00[ BC]" as to_json writes it:
 * "2026-12-02T06:16:21.643+00:00[ BC]"; infinity and other styles as they
 * are. */
static int json_timestamp(pgs_buf *b, const char *v, size_t n)
{
    char t[80];
    size_t k = 0, i = 0;
    if (n >= sizeof t - 4 || n < 19 || v[10] != ' ' || v[4] != '-')
        return pgs_json_string(b, v, n);
    memcpy(t, v, n);
    t[10] = 'T';
    for (i = 19; i < n && (v[i] == '.' || (v[i] >= '0' && v[i] <= '9')); i++)
        ;
    if (i + 3 <= n && (v[i] == '+' || v[i] == '-') && (i + 3 == n || v[i + 3] != ':')) {
        k = i + 3; /* a whole-hour offset: "+00" -> "+00:00" */
        memmove(t + k + 3, t + k, n - k);
        memcpy(t + k, ":00", 3);
        n += 3;
    }
    return pgs_json_string(b, t, n);
}

static int json_scalar(pgs_buf *b, int kind, const char *v, size_t n);

/* An array literal ("{1,2}", "{{a,\"b c\"},{NULL,d}}", "[0:1]={x,y}") as
 * nested JSON arrays, elements by kind, bounds dropped, as to_json does.
 * -1 when it is not such a literal (the caller writes the text instead). */
static int json_array(pgs_buf *b, int kind, const char *v, size_t n, pgs_buf *el)
{
    const char *p = v, *e = v + n;
    int depth = 0;
    if (p < e && *p == '[') {
        if ((p = memchr(v, '=', n)) == NULL)
            return -1;
        p++;
    }
    do {
        if (p >= e)
            return -1;
        if (*p == '{') {
            if (++depth > 6)
                return -1;
            pgs_buf_putc(b, '[');
            p++;
            if (p < e && *p == '}')
                continue; /* an empty level: the closing brace below */
            continue;
        }
        if (*p == '}') {
            pgs_buf_putc(b, ']');
            depth--;
            p++;
        } else { /* an element, quoted or not */
            pgs_buf_clear(el);
            if (*p == '"') {
                for (p++; p < e && *p != '"'; p++) {
                    if (*p == '\\' && ++p >= e)
                        return -1;
                    pgs_buf_putc(el, *p);
                }
                if (p++ >= e)
                    return -1;
                json_scalar(b, kind, el->data ? el->data : "", el->len);
            } else {
                const char *st = p;
                while (p < e && *p != ',' && *p != '}')
                    p++;
                size_t k = (size_t)(p - st);
                if (k == 4 && strncasecmp(st, "NULL", 4) == 0)
                    pgs_buf_append(b, "null", 4);
                else
                    json_scalar(b, kind, st, k);
            }
        }
        if (depth > 0 && p < e && *p == ',') {
            pgs_buf_putc(b, ',');
            p++;
        }
    } while (depth > 0);
    return p == e && !b->oom && !el->oom ? 0 : -1;
}

int pgs_json_value(pgs_buf *b, int kind, const char *v, size_t n, int isnull)
{
    if (isnull)
        return pgs_buf_append(b, "null", 4);
    if (kind & PGS_JSON_ARRAY) {
        pgs_buf el = PGS_BUF_INIT;
        size_t at = b->len;
        int rc = json_array(b, kind & ~PGS_JSON_ARRAY, v, n, &el);
        pgs_buf_free(&el);
        if (rc == 0)
            return 0;
        if (b->oom)
            return -1;
        b->len = at; /* not an array literal after all: its text */
        return pgs_json_string(b, v, n);
    }
    return json_scalar(b, kind, v, n);
}

static int json_scalar(pgs_buf *b, int kind, const char *v, size_t n)
{
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
    case PGS_JSON_TIMESTAMP: return json_timestamp(b, v, n);
    default: return pgs_json_string(b, v, n);
    }
}
