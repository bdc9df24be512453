/* Option json, for columns only the server can render as row_to_json does
 * (anonymous records, anyarray, types with a cast to json): the statement
 * runs as a subquery whose such columns the outer SELECT passes through
 * to_json, the function row_to_json applies to each field.
 *
 * Only a query can be a subquery: SELECT, VALUES, TABLE, one in
 * parentheses, or WITH whose statements only read. pgs_json_query_len
 * tells them apart with a lexer of PostgreSQL's comments, string literals,
 * quoted identifiers and dollar quotes; it errs on the side of "no" (the
 * columns are then written as their text), never of a subquery the server
 * refuses. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static int ident_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '$' || c >= 0x80;
}

static int ident_start(unsigned char c)
{
    return ident_char(c) && c != '$' && !(c >= '0' && c <= '9');
}

static int word_is(const char *w, size_t n, const char *kw)
{
    size_t k = strlen(kw);
    if (n != k)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = w[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != kw[i])
            return 0;
    }
    return 1;
}

/* Past the comments and white space at p; NULL for an unterminated
 * block comment. */
static const char *skip_blank(const char *p)
{
    for (;;) {
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v') {
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            int depth = 1; /* block comments nest */
            for (p += 2; depth > 0; p++) {
                if (*p == '\0')
                    return NULL;
                if (p[0] == '/' && p[1] == '*')
                    depth++, p++;
                else if (p[0] == '*' && p[1] == '/')
                    depth--, p++;
            }
        } else {
            return p;
        }
    }
}

/* Past the quoted text that starts at p (at its quote q); backslash escapes
 * when esc. NULL if unterminated. */
static const char *skip_quoted(const char *p, char q, int esc)
{
    for (p++; *p; p++) {
        if (esc && *p == '\\' && p[1] != '\0')
            p++;
        else if (*p == q && p[1] == q)
            p++;
        else if (*p == q)
            return p + 1;
    }
    return NULL;
}

/* p at '$' not inside an identifier: past the dollar-quoted string it
 * starts; p + 1 for a parameter ($1) or a lone '$'; NULL if unterminated. */
static const char *skip_dollar(const char *p)
{
    const char *t = p + 1;
    if (*t != '$' && !ident_start((unsigned char)*t))
        return p + 1;
    while (*t != '$' && ident_char((unsigned char)*t))
        t++;
    if (*t != '$')
        return p + 1;
    size_t tag = (size_t)(t + 1 - p); /* "$tag$" */
    for (const char *e = t + 1; (e = strchr(e, '$')) != NULL; e++)
        if (strncmp(e, p, tag) == 0)
            return e + tag;
    return NULL;
}

size_t pgs_json_query_len(const char *sql, int standard_strings)
{
    enum { UNKNOWN, QUERY, WITH } first = UNKNOWN;
    int modifies = 0, ended = 0;
    size_t len = 0; /* up to the end of the last token before any ';' */
    const char *p = sql;
    while ((p = skip_blank(p)) != NULL && *p) {
        const char *tok = p;
        if (*p == ';') {
            ended = 1;
            p++;
            continue;
        }
        if (ended)
            return 0; /* a second statement */
        if (ident_start((unsigned char)*p)) {
            while (ident_char((unsigned char)*p))
                p++;
            size_t n = (size_t)(p - tok);
            int one = n == 1 ? *tok | 0x20 : 0; /* a string's prefix? */
            if (one == 'e' && *p == '\'') {
                p = skip_quoted(p, '\'', 1); /* E'...': backslash escapes */
            } else if (one == 'u' && p[0] == '&' && (p[1] == '\'' || p[1] == '"')) {
                p = skip_quoted(p + 1, p[1], 0 /* U&'...' escapes are \XXXX, no quote */);
            } else if (first == UNKNOWN) {
                if (word_is(tok, n, "select") || word_is(tok, n, "values") ||
                    word_is(tok, n, "table"))
                    first = QUERY;
                else if (word_is(tok, n, "with"))
                    first = WITH;
                else
                    return 0;
            } else {
                modifies |= word_is(tok, n, "insert") || word_is(tok, n, "update") ||
                            word_is(tok, n, "delete") || word_is(tok, n, "merge");
            }
        } else if (*p == '\'') {
            p = skip_quoted(p, '\'', !standard_strings);
        } else if (*p == '"') {
            p = skip_quoted(p, '"', 0);
        } else if (*p == '$') {
            p = skip_dollar(p);
        } else if (*p == '(' && first == UNKNOWN) {
            p++; /* (SELECT ...) UNION ... */
        } else if (first == UNKNOWN) {
            return 0;
        } else {
            p++;
        }
        if (p == NULL)
            return 0;
        len = (size_t)(p - sql);
    }
    if (p == NULL || first == UNKNOWN || (first == WITH && modifies))
        return 0;
    return len;
}

static int put(char **w, size_t *left, const char *s, size_t n)
{
    if (n >= *left)
        return -1;
    memcpy(*w, s, n);
    *w += n;
    *left -= n;
    **w = '\0';
    return 0;
}

static int put_ident(char **w, size_t *left, const char *name)
{
    if (put(w, left, "\"", 1) != 0)
        return -1;
    for (const char *q; (q = strchr(name, '"')) != NULL; name = q + 1)
        if (put(w, left, name, (size_t)(q + 1 - name)) != 0 || put(w, left, "\"", 1) != 0)
            return -1;
    return put(w, left, name, strlen(name)) != 0 || put(w, left, "\"", 1) != 0 ? -1 : 0;
}

char *pgs_json_wrap(const char *sql, size_t len, int ncols, const char *const *names,
                    const unsigned char *server)
{
    static const char to_json[] = "pg_catalog.to_json(";
    size_t size = len + 64;
    for (int c = 0; c < ncols; c++)
        size += 2 * strlen(names[c]) + sizeof to_json + 48;
    char *out = malloc(size), *w = out;
    size_t left = size;
    if (out == NULL)
        return NULL;
    char col[32];
    int bad = put(&w, &left, "SELECT ", 7);
    for (int c = 0; c < ncols && !bad; c++) {
        int n = snprintf(col, sizeof col, "pgspout_q.c%d", c + 1);
        if (c)
            bad |= put(&w, &left, ", ", 2);
        if (server[c])
            bad |= put(&w, &left, to_json, sizeof to_json - 1);
        bad |= put(&w, &left, col, (size_t)n);
        if (server[c])
            bad |= put(&w, &left, ")", 1);
        bad |= put(&w, &left, " AS ", 4) || put_ident(&w, &left, names[c]);
    }
    bad |= put(&w, &left, " FROM (\n", 8) || put(&w, &left, sql, len) ||
           put(&w, &left, "\n) AS pgspout_q(", 16);
    for (int c = 0; c < ncols && !bad; c++) {
        int n = snprintf(col, sizeof col, "%sc%d", c ? ", " : "", c + 1);
        bad |= put(&w, &left, col, (size_t)n);
    }
    bad |= put(&w, &left, ")", 1);
    if (bad) { /* the size above is an upper bound: never here */
        free(out);
        return NULL;
    }
    return out;
}
