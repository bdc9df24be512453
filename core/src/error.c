/* error.c - the stable code table: pgspout_strerror, pgspout_code_name. */
#include "pgspout.h"

#include <stddef.h>

static const struct {
    int code;
    const char *name;
    const char *text;
} codes[] = {
    {PGSPOUT_OK, "ok", "success"},
    {PGSPOUT_DONE, "done", "the stream has ended"},
    {PGSPOUT_AGAIN, "again", "no row available yet; wait for the socket"},
    {PGSPOUT_PAUSED, "paused", "the stream is paused and its buffer is empty"},
    {PGSPOUT_EINVAL, "einval", "invalid argument"},
    {PGSPOUT_EOPTION, "eoption", "unknown option"},
    {PGSPOUT_EVALUE, "evalue", "invalid option value"},
    {PGSPOUT_ENOMEM, "enomem", "out of memory"},
    {PGSPOUT_ECONNECT, "econnect", "could not connect to the server"},
    {PGSPOUT_ECONN, "econn", "connection lost or unusable"},
    {PGSPOUT_ESQL, "esql", "the server reported an error"},
    {PGSPOUT_EBUSY, "ebusy", "busy: another stream or call is active"},
    {PGSPOUT_ESTATE, "estate", "operation not valid in this state"},
    {PGSPOUT_ECANCELLED, "ecancelled", "the stream was cancelled"},
    {PGSPOUT_ETIMEOUT, "etimeout", "the stream timeout expired"},
    {PGSPOUT_EPAUSE_TIMEOUT, "epause_timeout", "the stream was paused longer than pause_timeout"},
    {PGSPOUT_EMEMORY, "ememory", "the stream exceeded its memory limit"},
    {PGSPOUT_ENOTFOUND, "enotfound", "no such stream"},
    {PGSPOUT_EINTERNAL, "einternal", "internal error"},
    {PGSPOUT_EINTR, "eintr", "interrupted (the interrupt hook stopped a blocking call)"},
};

static int find(int code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == code)
            return (int)i;
    return -1;
}

const char *pgspout_strerror(int code)
{
    int i = find(code);
    return i < 0 ? "unknown error code" : codes[i].text;
}

const char *pgspout_code_name(int code)
{
    int i = find(code);
    return i < 0 ? "unknown" : codes[i].name;
}

const char *pgspout_state_name(int state)
{
    static const char *const names[] = {"running", "paused",    "done",  "limited",
                                        "failed",  "cancelled", "closed"};
    if (state < 0 || state >= (int)(sizeof names / sizeof names[0]))
        return "unknown";
    return names[state];
}
