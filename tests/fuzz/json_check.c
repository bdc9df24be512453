/* json_check.c - see json_check.h. */
#include "json_check.h"

#include <stdint.h>

size_t fz_utf8_seq(const unsigned char *s, size_t n)
{
    /* Unicode table 3-7: well-formed UTF-8 byte sequences */
    if (n == 0)
        return 0;
    unsigned char b0 = s[0];
    if (b0 <= 0x7F)
        return 1;
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    if (b0 >= 0xC2 && b0 <= 0xDF)
        len = 2;
    else if (b0 == 0xE0)
        len = 3, lo = 0xA0;
    else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF)
        len = 3;
    else if (b0 == 0xED)
        len = 3, hi = 0x9F;
    else if (b0 == 0xF0)
        len = 4, lo = 0x90;
    else if (b0 >= 0xF1 && b0 <= 0xF3)
        len = 4;
    else if (b0 == 0xF4)
        len = 4, hi = 0x8F;
    else
        return 0;
    if (n < len)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

int fz_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = fz_utf8_seq(s + i, n - i);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

typedef struct P {
    const unsigned char *s;
    size_t n, i;
    int depth;
    char *out; /* string decoding target, or NULL */
    size_t olen;
} P;

static void ws(P *p)
{
    while (p->i < p->n &&
           (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int hex4(P *p, unsigned *v)
{
    if (p->n - p->i < 4)
        return 0;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p->s[p->i++];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

static void emit_cp(P *p, unsigned cp)
{
    if (!p->out)
        return;
    char *o = p->out + p->olen;
    if (cp < 0x80)
        o[0] = (char)cp, p->olen += 1;
    else if (cp < 0x800)
        o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 63)), p->olen += 2;
    else if (cp < 0x10000)
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 63)),
        o[2] = (char)(0x80 | (cp & 63)), p->olen += 3;
    else
        o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 63)),
        o[2] = (char)(0x80 | ((cp >> 6) & 63)), o[3] = (char)(0x80 | (cp & 63)), p->olen += 4;
}

static int string(P *p)
{
    if (p->i >= p->n || p->s[p->i] != '"')
        return 0;
    p->i++;
    for (;;) {
        if (p->i >= p->n)
            return 0;
        unsigned char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            p->i++;
            if (p->i >= p->n)
                return 0;
            unsigned char e = p->s[p->i++];
            unsigned cp;
            switch (e) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (!hex4(p, &cp))
                    return 0;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return 0; /* lone low surrogate */
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                        return 0;
                    p->i += 2;
                    if (!hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return 0;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                break;
            default: return 0;
            }
            emit_cp(p, cp);
            continue;
        }
        size_t l = fz_utf8_seq(p->s + p->i, p->n - p->i);
        if (l == 0)
            return 0;
        if (p->out)
            for (size_t k = 0; k < l; k++)
                p->out[p->olen++] = (char)p->s[p->i + k];
        p->i += l;
    }
}

static int digits(P *p)
{
    size_t st = p->i;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
        p->i++;
    return p->i > st;
}

static int number(P *p)
{
    if (p->i < p->n && p->s[p->i] == '-')
        p->i++;
    if (p->i >= p->n)
        return 0;
    if (p->s[p->i] == '0')
        p->i++;
    else if (p->s[p->i] >= '1' && p->s[p->i] <= '9')
        digits(p);
    else
        return 0;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        if (!digits(p))
            return 0;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (!digits(p))
            return 0;
    }
    return 1;
}

static int lit(P *p, const char *w, size_t l)
{
    if (p->n - p->i < l)
        return 0;
    for (size_t k = 0; k < l; k++)
        if (p->s[p->i + k] != (unsigned char)w[k])
            return 0;
    p->i += l;
    return 1;
}

static int value(P *p);

static int array(P *p)
{
    p->i++; /* [ */
    ws(p);
    if (p->i < p->n && p->s[p->i] == ']') {
        p->i++;
        return 1;
    }
    for (;;) {
        if (!value(p))
            return 0;
        ws(p);
        if (p->i >= p->n)
            return 0;
        if (p->s[p->i] == ']') {
            p->i++;
            return 1;
        }
        if (p->s[p->i] != ',')
            return 0;
        p->i++;
    }
}

static int object(P *p)
{
    p->i++; /* { */
    ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
        return 1;
    }
    for (;;) {
        ws(p);
        if (!string(p))
            return 0;
        ws(p);
        if (p->i >= p->n || p->s[p->i] != ':')
            return 0;
        p->i++;
        if (!value(p))
            return 0;
        ws(p);
        if (p->i >= p->n)
            return 0;
        if (p->s[p->i] == '}') {
            p->i++;
            return 1;
        }
        if (p->s[p->i] != ',')
            return 0;
        p->i++;
    }
}

static int value(P *p)
{
    ws(p);
    if (p->i >= p->n || ++p->depth > 500)
        return 0;
    int ok;
    switch (p->s[p->i]) {
    case '{': ok = object(p); break;
    case '[': ok = array(p); break;
    case '"': ok = string(p); break;
    case 't': ok = lit(p, "true", 4); break;
    case 'f': ok = lit(p, "false", 5); break;
    case 'n': ok = lit(p, "null", 4); break;
    default: ok = number(p); break;
    }
    p->depth--;
    return ok;
}

int fz_json_valid(const char *s, size_t n)
{
    P p = {(const unsigned char *)s, n, 0, 0, NULL, 0};
    if (!value(&p))
        return 0;
    ws(&p);
    return p.i == n;
}

long fz_json_string_decode(const char *s, size_t n, char *out)
{
    P p = {(const unsigned char *)s, n, 0, 0, out, 0};
    if (!string(&p) || p.i != n)
        return -1;
    return (long)p.olen;
}

int fz_json_number(const char *s, size_t n)
{
    P p = {(const unsigned char *)s, n, 0, 0, NULL, 0};
    return number(&p) && p.i == n;
}
