/* alloc.h - the core's allocations, with failure injection in test builds.
 *
 * Include it LAST in every core file that allocates (after every system
 * header). In a normal build it is empty. Built with PGSPOUT_FAULT_INJECTION
 * (the CMake option of that name, for tests only), malloc, calloc, realloc
 * and strdup of the file, and the libpq calls that fail only when libpq is
 * out of memory (PQcopyResult, PQgetCancel, PQconnectdbParams,
 * PQconnectStartParams, PQconninfoParse), go through one counter that can make the N-th such call
 * fail, as SQLite's malloc tests do. libpq's own allocations are not
 * intercepted. free() is not wrapped: every pointer still comes from the
 * real allocator.
 *
 * The control functions are for tests (tests/c/test_alloc_fail.c); a test
 * includes this header with PGS_ALLOC_CONTROL_ONLY defined, so its own
 * allocations are not counted.
 */
#ifndef PGSPOUT_ALLOC_H
#define PGSPOUT_ALLOC_H

#ifdef PGSPOUT_FAULT_INJECTION

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

/* Counting starts at zero. After pgs_fault_arm(n, persist) the n-th counted
 * call from now (n >= 1) fails, and with persist every one after it as well;
 * n = 0 disarms. */
void pgs_fault_arm(long n, int persist);
/* Counted calls since the last arm (failed ones included). */
long pgs_fault_calls(void);
/* Calls made to fail since the last arm. */
long pgs_fault_failures(void);

void *pgs_fault_malloc(size_t n);
void *pgs_fault_calloc(size_t n, size_t size);
void *pgs_fault_realloc(void *p, size_t n);
char *pgs_fault_strdup(const char *s);
PGresult *pgs_fault_PQcopyResult(const PGresult *src, int flags);
PGcancel *pgs_fault_PQgetCancel(PGconn *conn);
PGconn *pgs_fault_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                    int expand_dbname);
PGconn *pgs_fault_PQconnectStartParams(const char *const *keywords, const char *const *values,
                                       int expand_dbname);
PQconninfoOption *pgs_fault_PQconninfoParse(const char *conninfo, char **errmsg);

#ifndef PGS_ALLOC_CONTROL_ONLY
#define malloc(n)                     pgs_fault_malloc(n)
#define calloc(n, size)               pgs_fault_calloc(n, size)
#define realloc(p, n)                 pgs_fault_realloc(p, n)
#define strdup(s)                     pgs_fault_strdup(s)
#define PQcopyResult(src, flags)      pgs_fault_PQcopyResult(src, flags)
#define PQgetCancel(conn)             pgs_fault_PQgetCancel(conn)
#define PQconnectdbParams(k, v, e)    pgs_fault_PQconnectdbParams(k, v, e)
#define PQconninfoParse(conninfo, em) pgs_fault_PQconninfoParse(conninfo, em)
#define PQconnectStartParams(k, v, e) pgs_fault_PQconnectStartParams(k, v, e)
#endif

#endif /* PGSPOUT_FAULT_INJECTION */
#endif
