/* transport.c - the row transport, chosen at run time.
 *
 * libpq >= 17 hands a query's rows over in chunks (PQsetChunkedRowsMode:
 * one PGresult per chunk of rows); older libpq only one PGresult per row
 * (PQsetSingleRowMode), which costs a result allocation and a copy of the
 * column descriptions per row. Which libpq a process runs with is known only
 * when it runs: a build against libpq 15 headers may load libpq 18 (a newer
 * system, a wheel that bundles one, LD_PRELOAD). So the chunked mode is
 * looked up in the libpq this code's own calls go to, once per process:
 * dladdr() on PQsetSingleRowMode names that library (the preloaded one when
 * LD_PRELOAD interposes; a copy loaded RTLD_LOCAL, as Python loads
 * extension modules, or under a bundled file name, all the same), and
 * dlsym() on a handle to it finds PQsetChunkedRowsMode there or nowhere. The
 * function found is used only if it lies in that same library, so one
 * connection is never handled by two libpq copies. The symbol and the
 * PGRES_TUPLES_CHUNK status are stable libpq ABI. With libpq >= 17 headers
 * (LIBPQ_HAS_CHUNK_MODE) the function is linked directly instead.
 */
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>

typedef int (*set_chunked_fn)(PGconn *, int);

static set_chunked_fn set_chunked; /* NULL: single-row mode */
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

#ifdef LIBPQ_HAS_CHUNK_MODE
_Static_assert(PGRES_TUPLES_CHUNK == PGS_TUPLES_CHUNK, "libpq's PGRES_TUPLES_CHUNK moved");

static void resolve(void) { set_chunked = PQsetChunkedRowsMode; }
#else
static void resolve(void)
{
    Dl_info pq, at;
    if (!dladdr((void *)PQsetSingleRowMode, &pq) || pq.dli_fname == NULL)
        return;
    /* the library already loaded (NOLOAD); the main program when libpq is
     * linked into it statically, whose file name dlopen does not take */
    void *h = dlopen(pq.dli_fname, RTLD_NOLOAD | RTLD_LAZY);
    if (h == NULL)
        h = dlopen(NULL, RTLD_LAZY);
    if (h == NULL)
        return;
    void *sym = dlsym(h, "PQsetChunkedRowsMode");
    /* dlsym also searches the handle's dependencies: only that libpq's own */
    if (sym != NULL && dladdr(sym, &at) && at.dli_fbase == pq.dli_fbase)
        set_chunked = (set_chunked_fn)sym;
    dlclose(h); /* drops NOLOAD's reference; the library stays loaded */
}
#endif

int pgs_chunked_rows(void)
{
    pthread_once(&resolved, resolve);
    return set_chunked != NULL;
}

int pgs_set_row_mode(PGconn *pg, int chunk_rows)
{
    if (pgs_chunked_rows())
        return set_chunked(pg, chunk_rows);
    return PQsetSingleRowMode(pg);
}

const char *pgspout_transport(void) { return pgs_chunked_rows() ? "chunked" : "single-row"; }
