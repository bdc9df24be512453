/* alloc.c - allocation failure injection (PGSPOUT_FAULT_INJECTION builds only;
 * see alloc.h). Compiled into the core only when the CMake option is on. */
#define PGS_ALLOC_CONTROL_ONLY /* this file calls the real functions */
#include "alloc.h"

#include <stdatomic.h>

#ifndef PGSPOUT_FAULT_INJECTION
#error "alloc.c is built only with PGSPOUT_FAULT_INJECTION"
#endif

/* Atomics: the registry's reaper and the cancel helper threads allocate too. */
static _Atomic long calls, fail_at, failures;
static _Atomic int persist_mode;

void pgs_fault_arm(long n, int persist)
{
    atomic_store(&fail_at, 0);
    atomic_store(&calls, 0);
    atomic_store(&failures, 0);
    atomic_store(&persist_mode, persist);
    atomic_store(&fail_at, n);
}

long pgs_fault_calls(void) { return atomic_load(&calls); }

long pgs_fault_failures(void) { return atomic_load(&failures); }

/* 1 if this call is to fail. */
static int should_fail(void)
{
    long k = atomic_fetch_add(&calls, 1) + 1;
    long at = atomic_load(&fail_at);
    if (at <= 0 || k < at || (k > at && !atomic_load(&persist_mode)))
        return 0;
    atomic_fetch_add(&failures, 1);
    return 1;
}

void *pgs_fault_malloc(size_t n) { return should_fail() ? NULL : malloc(n); }

void *pgs_fault_calloc(size_t n, size_t size) { return should_fail() ? NULL : calloc(n, size); }

void *pgs_fault_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n); }

char *pgs_fault_strdup(const char *s) { return should_fail() ? NULL : strdup(s); }

PGresult *pgs_fault_PQcopyResult(const PGresult *src, int flags)
{
    return should_fail() ? NULL : PQcopyResult(src, flags);
}

PGcancel *pgs_fault_PQgetCancel(PGconn *conn) { return should_fail() ? NULL : PQgetCancel(conn); }

PGconn *pgs_fault_PQconnectdbParams(const char *const *keywords, const char *const *values,
                                    int expand_dbname)
{
    return should_fail() ? NULL : PQconnectdbParams(keywords, values, expand_dbname);
}

PGconn *pgs_fault_PQconnectStartParams(const char *const *keywords, const char *const *values,
                                       int expand_dbname)
{
    return should_fail() ? NULL : PQconnectStartParams(keywords, values, expand_dbname);
}

PQconninfoOption *pgs_fault_PQconninfoParse(const char *conninfo, char **errmsg)
{
    if (should_fail()) {
        if (errmsg)
            *errmsg = NULL; /* libpq's answer when it is out of memory */
        return NULL;
    }
    return PQconninfoParse(conninfo, errmsg);
}
