/* described.c - the statements a connection has described for option json.
 *
 * A stream with option json describes its statement before running it: a
 * round trip, to learn the columns' types (binary or text results, a
 * subquery for the columns only the server renders, the catalog's rows
 * for the types the built-in table does not know). When the connection
 * runs the same text again (a registry's pooled connection serving the
 * same query request after request), stream.c takes the types from here
 * and sends the statement at once, in text; the result's own description
 * arrives before its first row and is checked against them (set_meta): a
 * statement whose types changed since (DDL, another search_path) is
 * rendered with its new types and described anew next time.
 *
 * Only statements that needed no catalog lookup and no subquery are kept,
 * so that the types alone decide how rows render. A few per connection (a
 * statement's types depend on the session), the oldest replaced first; the
 * pool's reset keeps them, as it keeps the connection's type cache. Owner
 * thread of the connection. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h" /* last: wraps the allocators in fault-injection builds */

#define DESCRIBED_MAX     8
#define DESCRIBED_SQL_MAX 8192 /* longer statements are described every time */

typedef struct entry {
    char *sql; /* NULL: free */
    int nparams;
    int ncols;
    unsigned int *oids;
} entry;

struct pgs_described {
    entry e[DESCRIBED_MAX];
    int next; /* the entry replaced next */
};

static void clear(entry *e)
{
    free(e->sql);
    free(e->oids);
    memset(e, 0, sizeof *e);
}

int pgs_described_find(const pgspout_conn *c, const char *sql, int nparams,
                       const unsigned int **oids, int *ncols)
{
    const pgs_described *d = c->described;
    for (int i = 0; d && i < DESCRIBED_MAX; i++) {
        const entry *e = &d->e[i];
        if (e->sql && e->nparams == nparams && strcmp(e->sql, sql) == 0) {
            *oids = e->oids;
            *ncols = e->ncols;
            return i;
        }
    }
    return -1;
}

void pgs_described_put(pgspout_conn *c, const char *sql, int nparams, const unsigned int *oids,
                       int ncols)
{
    size_t len = strlen(sql);
    if (len > DESCRIBED_SQL_MAX || ncols < 0)
        return;
    const unsigned int *have;
    int n;
    if (pgs_described_find(c, sql, nparams, &have, &n) >= 0)
        return;
    if (c->described == NULL && (c->described = calloc(1, sizeof *c->described)) == NULL)
        return; /* a cache: without memory, statements are described every time */
    entry *e = &c->described->e[c->described->next];
    clear(e);
    e->sql = malloc(len + 1);
    e->oids = malloc((size_t)(ncols > 0 ? ncols : 1) * sizeof *e->oids);
    if (e->sql == NULL || e->oids == NULL) {
        clear(e);
        return;
    }
    memcpy(e->sql, sql, len + 1);
    if (ncols > 0)
        memcpy(e->oids, oids, (size_t)ncols * sizeof *oids);
    e->nparams = nparams;
    e->ncols = ncols;
    c->described->next = (c->described->next + 1) % DESCRIBED_MAX;
}

void pgs_described_drop(pgspout_conn *c, int i)
{
    if (c->described && i >= 0 && i < DESCRIBED_MAX)
        clear(&c->described->e[i]);
}

void pgs_described_free(pgspout_conn *c)
{
    if (c->described == NULL)
        return;
    for (int i = 0; i < DESCRIBED_MAX; i++)
        clear(&c->described->e[i]);
    free(c->described);
    c->described = NULL;
}
