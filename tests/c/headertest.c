/* headertest.c - the public header compiles alone, first, in strict mode:
 *   cc -std=c11 -pedantic -Werror -Wall -Wextra -fsyntax-only headertest.c
 * (also as C++11). With -DHEADERTEST_USE_MACROS the documented macros are
 * used the way the header tells users to use them. */
#include "pgspout.h"

#ifdef __cplusplus
#define HT_ASSERT(c, m) static_assert(c, m)
#else
#define HT_ASSERT(c, m) _Static_assert(c, m)
#endif

/* Stable values (the header promises they are never renumbered). */
HT_ASSERT(PGSPOUT_OK == 0, "OK");
HT_ASSERT(PGSPOUT_DONE == 1 && PGSPOUT_AGAIN == 2 && PGSPOUT_PAUSED == 3, "outcomes");
HT_ASSERT(PGSPOUT_EINVAL == -1 && PGSPOUT_EOPTION == -2 && PGSPOUT_EVALUE == -3 &&
              PGSPOUT_ENOMEM == -4 && PGSPOUT_ECONNECT == -5 && PGSPOUT_ECONN == -6 &&
              PGSPOUT_ESQL == -7 && PGSPOUT_EBUSY == -8 && PGSPOUT_ESTATE == -9 &&
              PGSPOUT_ECANCELLED == -10 && PGSPOUT_ETIMEOUT == -11 &&
              PGSPOUT_EPAUSE_TIMEOUT == -12 && PGSPOUT_EMEMORY == -13 && PGSPOUT_ENOTFOUND == -14 &&
              PGSPOUT_EINTERNAL == -15,
          "error codes");
HT_ASSERT(PGSPOUT_STATE_RUNNING == 0 && PGSPOUT_STATE_PAUSED == 1 && PGSPOUT_STATE_DONE == 2 &&
              PGSPOUT_STATE_LIMITED == 3 && PGSPOUT_STATE_FAILED == 4 &&
              PGSPOUT_STATE_CANCELLED == 5 && PGSPOUT_STATE_CLOSED == 6,
          "states");
HT_ASSERT(PGSPOUT_VERSION_NUMBER ==
              PGSPOUT_VERSION_MAJOR * 10000 + PGSPOUT_VERSION_MINOR * 100 + PGSPOUT_VERSION_PATCH,
          "version number");
HT_ASSERT(PGSPOUT_NONBLOCK == 1, "flags");
/* The stats struct starts with its size (the ABI growth rule). */
HT_ASSERT(offsetof(pgspout_stats, size) == 0, "stats.size first");

#ifdef HEADERTEST_USE_MACROS
size_t headertest_stats_size(void);
size_t headertest_pool_stats_size(void);
size_t headertest_stats_size(void)
{
    pgspout_stats st = PGSPOUT_STATS_INIT; /* as documented */
    return st.size;
}

size_t headertest_pool_stats_size(void)
{
    pgspout_pool_stats st = PGSPOUT_POOL_STATS_INIT;
    return st.size;
}
#endif

/* Every entry point is declared with the expected signature. */
typedef int (*ht_connect)(const char *, pgspout_conn **);
typedef int (*ht_open)(pgspout_conn *, const char *, int, const char *const *,
                       const pgspout_options *, pgspout_stream **);
typedef int (*ht_next)(pgspout_stream *, const pgspout_row **);
typedef int (*ht_chunk)(pgspout_stream *, int, const pgspout_chunk **);
typedef const char *(*ht_value)(const pgspout_row *, int, size_t *);
int headertest_signatures(void);
int headertest_signatures(void)
{
    ht_connect c = pgspout_connect;
    ht_open o = pgspout_stream_open;
    ht_next n = pgspout_stream_next;
    ht_chunk k = pgspout_stream_next_chunk;
    ht_value v = pgspout_row_value;
    return c != 0 && o != 0 && n != 0 && k != 0 && v != 0;
}
