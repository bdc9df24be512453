/* partitions.h - pgspout --partitions N --table T: the partitions of a table
 * read in parallel, one output file per partition, in one snapshot. */
#ifndef PGSPOUT_CLI_PARTITIONS_H
#define PGSPOUT_CLI_PARTITIONS_H

#include <pgspout.h>

typedef struct parts_args {
    const char *conninfo;        /* for the snapshot holder and each partition */
    const pgspout_options *opts; /* connection and stream keys */
    pgspout_conn *conn;          /* connected: runs the plan's catalog queries */
    pgspout_plan_spec spec;      /* table, columns, where, params, npartitions, key, bounds */
    const char *output;          /* DIR (existing, or ending in '/') or a PATTERN with {} */
    int fmt, header;
    /* --progress: one line on stderr for all the partitions together, every
     * progress_interval and every progress_rows rows in all (the keys of
     * opts), and at the end; rewritten in place when tty. The total is
     * opts' expected_rows, else the sum of estimate's row estimates of the
     * partitions' queries (-1: unknown). */
    int progress, tty;
    long long (*estimate)(pgspout_conn *conn, const char *sql, int nparams,
                          const char *const *params);
} parts_args;

/* Check -o for --partitions: 0, or a usage message in why (static). */
int parts_output_ok(const char *output, const char **why);
/* Export a snapshot, plan, read every partition in its own thread into a
 * temporary file beside its target, and rename them all only when every
 * partition ended well (else remove them all). Messages go to stderr, the
 * library's failures through report. Returns the exit status. */
int parts_run(const parts_args *a, void (*report)(int code, const char *msg, const char *sqlstate));
/* From the signal thread: cancel every running partition (any thread). */
void parts_cancel(void);
/* From the signal thread before exiting at once: remove the temporary files. */
void parts_unlink(void);

#endif
