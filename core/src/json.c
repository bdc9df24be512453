/* json.c - JSON rendering of values and rows. */
#include "json.h"
#include "pgspout.h"

#include <string.h>
#include <strings.h>

/* How PostgreSQL's to_json renders a value of a built-in type, by OID
 * (jsontypes.c's table): the fast kinds need no type tree. */
int pgs_json_kind(unsigned int oid)
{
    const pgs_builtin *t = pgs_json_builtin(oid);
    if (t == NULL)
        return PGS_JSON_UNRESOLVED;
    if (t->kind < PGS_JT_ARRAY)
        return t->kind;
    if (t->kind == PGS_JT_ARRAY && t->delim == ',') {
        const pgs_builtin *e = pgs_json_builtin(t->elem);
        if (e && e->kind < PGS_JT_ARRAY)
            return PGS_JSON_ARRAY | e->kind;
    }
    return PGS_JSON_TREE;
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
static int json_tree(pgs_buf *b, const pgs_jtype *t, const char *v, size_t n, pgs_jscratch *sc,
                     int depth);

/* One element or field value (its text v[0..n)) of type t, or of the
 * scalar kind when t is NULL. */
static int json_elem(pgs_buf *b, const pgs_jtype *t, int kind, const char *v, size_t n,
                     pgs_jscratch *sc, int depth)
{
    if (t == NULL)
        return json_scalar(b, kind, v, n);
    if (t->kind < PGS_JT_ARRAY)
        return json_scalar(b, t->kind, v, n);
    return json_tree(b, t, v, n, sc, depth);
}

/* An array literal ("{1,2}", "{{a,\"b c\"},{NULL,d}}", "[0:1]={x,y}") as
 * nested JSON arrays, elements of type elem (or of the scalar kind when
 * elem is NULL), delimited by delim, bounds dropped, as to_json does. el
 * holds an element's unescaped text; sc and depth are for elements that
 * are trees themselves. -1 when it is not such a literal (the caller
 * writes the text instead). */
static int json_array(pgs_buf *b, const pgs_jtype *elem, int kind, char delim, const char *v,
                      size_t n, pgs_buf *el, pgs_jscratch *sc, int depth)
{
    const char *p = v, *e = v + n;
    int dims = 0;
    if (elem && elem->kind < PGS_JT_ARRAY) { /* scalar elements: no tree below */
        kind = elem->kind;
        elem = NULL;
    }
    if (p < e && *p == '[') {
        if ((p = memchr(v, '=', n)) == NULL)
            return -1;
        p++;
    }
    if (p >= e || *p != '{')
        return -1;
    do {
        if (p >= e)
            return -1;
        if (*p == '{') {
            if (++dims > 6)
                return -1;
            pgs_buf_putc(b, '[');
            p++;
            continue; /* an empty level ends at the closing brace below */
        }
        if (*p == '}') {
            if (p[-1] == delim)
                return -1; /* "{a,}": an element missing */
            pgs_buf_putc(b, ']');
            dims--;
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
                if (el->oom) { /* out of memory, not a mismatch: the output says so */
                    b->oom = 1;
                    return -1;
                }
                if (elem)
                    json_tree(b, elem, el->data ? el->data : "", el->len, sc, depth + 1);
                else
                    json_scalar(b, kind, el->data ? el->data : "", el->len);
            } else {
                const char *st = p;
                while (p < e && *p != delim && *p != '}')
                    p++;
                size_t k = (size_t)(p - st);
                if (k == 0)
                    return -1;
                if (k == 4 && strncasecmp(st, "NULL", 4) == 0)
                    pgs_buf_append(b, "null", 4);
                else if (elem)
                    json_tree(b, elem, st, k, sc, depth + 1);
                else
                    json_scalar(b, kind, st, k);
            }
        }
        if (dims > 0) { /* after an element or a level: a delimiter or the end of one */
            if (p < e && *p == delim) {
                pgs_buf_putc(b, ',');
                p++;
            } else if (p >= e || *p != '}') {
                return -1;
            }
        }
    } while (dims > 0);
    return p == e && !b->oom ? 0 : -1;
}

/* int2vector, oidvector: "1 2 3" as [1,2,3] (oids as strings, as to_json). */
static int json_vector(pgs_buf *b, const pgs_jtype *t, const char *v, size_t n)
{
    const char *p = v, *e = v + n;
    int kind = t->elem ? t->elem->kind : PGS_JSON_STRING;
    pgs_buf_putc(b, '[');
    while (p < e) {
        const char *st = p;
        while (p < e && *p != ' ')
            p++;
        if (p == st)
            return -1;
        if (st != v)
            pgs_buf_putc(b, ',');
        if (json_scalar(b, kind < PGS_JT_ARRAY ? kind : PGS_JSON_STRING, st, (size_t)(p - st)) != 0)
            return -1;
        if (p < e && ++p == e)
            return -1; /* a trailing space */
    }
    return pgs_buf_putc(b, ']');
}

/* record_out's text of a composite ("(1,\"a b\",)": fields quoted when they
 * must be, "" and \\ inside quotes, NULL as nothing) as an object keyed by
 * the fields' names, each value by its type. -1 when the text does not have
 * t's fields. */
static int json_composite(pgs_buf *b, const pgs_jtype *t, const char *v, size_t n, pgs_jscratch *sc,
                          int depth)
{
    const char *p = v, *e = v + n;
    pgs_buf *el = &sc->lvl[depth];
    if (p >= e || *p++ != '(')
        return -1;
    pgs_buf_putc(b, '{');
    for (int i = 0; i < t->nfields; i++) {
        if (i > 0) {
            if (p >= e || *p++ != ',')
                return -1;
            pgs_buf_putc(b, ',');
        }
        pgs_buf_append(b, t->fields[i].key, t->fields[i].key_len);
        if (p < e && (*p == ',' || *p == ')')) { /* nothing at all: NULL */
            pgs_buf_append(b, "null", 4);
            continue;
        }
        pgs_buf_clear(el);
        int quoted = 0;
        while (p < e && (quoted || (*p != ',' && *p != ')'))) {
            if (*p == '"') {
                if (quoted && p + 1 < e && p[1] == '"') {
                    pgs_buf_putc(el, '"');
                    p += 2;
                } else {
                    quoted = !quoted;
                    p++;
                }
            } else if (*p == '\\') {
                if (++p >= e)
                    return -1;
                pgs_buf_putc(el, *p++);
            } else {
                pgs_buf_putc(el, *p++);
            }
        }
        if (el->oom) { /* out of memory, not a mismatch: the output says so */
            b->oom = 1;
            return -1;
        }
        if (quoted)
            return -1;
        if (json_elem(b, t->fields[i].type, PGS_JSON_STRING, el->data ? el->data : "", el->len, sc,
                      depth + 1) != 0)
            return -1;
    }
    if (p + 1 != e || *p != ')')
        return -1;
    return pgs_buf_putc(b, '}');
}

/* A value of type t at nesting depth: its structure, or (when its text
 * does not have it, or nesting is too deep) its text as a string. */
static int json_tree(pgs_buf *b, const pgs_jtype *t, const char *v, size_t n, pgs_jscratch *sc,
                     int depth)
{
    size_t at = b->len;
    int rc = -1;
    if (depth < PGS_JT_DEPTH) {
        switch (t->kind) {
        case PGS_JT_ARRAY:
            rc =
                json_array(b, t->elem, PGS_JSON_STRING, t->delim, v, n, &sc->lvl[depth], sc, depth);
            break;
        case PGS_JT_VECTOR: rc = json_vector(b, t, v, n); break;
        case PGS_JT_COMPOSITE: rc = json_composite(b, t, v, n, sc, depth); break;
        case PGS_JT_RECORD:
        case PGS_JT_ANYARRAY:
        case PGS_JT_CAST: break; /* their text, by design */
        default: return json_scalar(b, t->kind, v, n);
        }
    }
    if (rc == 0 && !b->oom)
        return 0;
    if (b->oom)
        return -1;
    if (t->kind == PGS_JT_ARRAY || t->kind == PGS_JT_VECTOR || t->kind == PGS_JT_COMPOSITE)
        sc->mismatch = 1;
    b->len = at;
    return pgs_json_string(b, v, n);
}

int pgs_json_tree(pgs_buf *b, const pgs_jtype *t, const char *v, size_t n, pgs_jscratch *sc)
{
    return json_tree(b, t, v, n, sc, 0);
}

void pgs_jscratch_free(pgs_jscratch *sc)
{
    for (int i = 0; i <= PGS_JT_DEPTH; i++)
        pgs_buf_free(&sc->lvl[i]);
}

int pgs_json_value(pgs_buf *b, int kind, const char *v, size_t n, int isnull)
{
    if (isnull)
        return pgs_buf_append(b, "null", 4);
    if (kind & PGS_JSON_ARRAY) {
        pgs_buf el = PGS_BUF_INIT;
        size_t at = b->len;
        int rc = json_array(b, NULL, kind & ~PGS_JSON_ARRAY, ',', v, n, &el, NULL, 0);
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
