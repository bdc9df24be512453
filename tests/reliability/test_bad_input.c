/* test_bad_input.c - bad input of every kind gets its documented code, never
 * a crash, and the connection still streams correctly afterwards.
 *
 * Tables: NULL and out-of-range arguments for every public function;
 * malformed option values; invalid DSNs. Then SQL errors before and after
 * the first row, wrong parameter counts and types, a 50 MB parameter,
 * invalid UTF-8, COPY and multi-statement SQL, closed connections, two
 * threads on one connection. After each case the same connection streams
 * the reference query with the server's checksum.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relutil.h"

static int bad_inputs_tried;

/* ------------------------------------------------ NULL / range table */

/* Handles the cases use: an open stream with a current row and chunk on
 * `busy`, and a connection with nothing running (`idle`). */
static struct fixture {
    pgspout_conn *busy, *idle;
    pgspout_stream *s;
    const pgspout_row *row;
    const pgspout_chunk *chunk;
    pgspout_options *o;
} F;

static int keep_all(const pgspout_row *r, void *ud)
{
    (void)r, (void)ud;
    return 1;
}

typedef struct null_case {
    const char *call;
    int (*check)(void); /* 1 = as documented */
} null_case;

#define CASE(name, expr)                                                                           \
    static int name(void) { return (expr); }

/* codes and names */
CASE(c_strerror_unknown, pgspout_strerror(12345) != NULL && *pgspout_strerror(12345))
CASE(c_strerror_min, pgspout_strerror(INT_MIN) != NULL)
CASE(c_code_name_unknown, strcmp(pgspout_code_name(12345), "unknown") == 0)
CASE(c_state_name_neg, strcmp(pgspout_state_name(-1), "unknown") == 0)
CASE(c_state_name_big, strcmp(pgspout_state_name(INT_MAX), "unknown") == 0)
CASE(c_free_null, (pgspout_free(NULL), 1))
CASE(c_log_hook_null, (pgspout_set_log_hook(NULL, NULL), 1))
/* options */
CASE(c_opt_set_null_o, pgspout_options_set(NULL, "chunk_rows", "1") == PGSPOUT_EINVAL)
CASE(c_opt_set_null_key, pgspout_options_set(F.o, NULL, "1") == PGSPOUT_EINVAL)
CASE(c_opt_set_null_value, pgspout_options_set(F.o, "chunk_rows", NULL) == PGSPOUT_EINVAL)
CASE(c_opt_set_empty_key, pgspout_options_set(F.o, "", "1") == PGSPOUT_EOPTION)
CASE(c_opt_get_null_o, pgspout_options_get(NULL, "chunk_rows") == NULL)
CASE(c_opt_get_null_key, pgspout_options_get(F.o, NULL) == NULL)
CASE(c_opt_get_unknown, pgspout_options_get(F.o, "no_such_key") == NULL)
CASE(c_opt_error_null, pgspout_options_error(NULL) != NULL)
CASE(c_opt_free_null, (pgspout_options_free(NULL), 1))
CASE(c_opt_filter_null_o, pgspout_options_set_filter(NULL, keep_all, NULL) == PGSPOUT_EINVAL)
CASE(c_opt_filter_null_fn, pgspout_options_set_filter(F.o, NULL, NULL) == PGSPOUT_OK)
CASE(c_opt_progress_null_o, pgspout_options_set_progress(NULL, NULL, NULL) == PGSPOUT_EINVAL)
/* connections */
static int c_connect_null_dsn(void)
{
    pgspout_conn *c = (pgspout_conn *)&F; /* must be overwritten with NULL */
    int rc = pgspout_connect(NULL, &c);
    return rc == PGSPOUT_EINVAL && c == NULL;
}
CASE(c_connect_null_out, pgspout_connect(tu_dsn(), NULL) == PGSPOUT_EINVAL)
static int c_connect_opts_null_dsn(void)
{
    pgspout_conn *c = (pgspout_conn *)&F;
    int rc = pgspout_connect_opts(NULL, F.o, &c);
    return rc == PGSPOUT_EINVAL && c == NULL;
}
CASE(c_connect_opts_null_out, pgspout_connect_opts(tu_dsn(), NULL, NULL) == PGSPOUT_EINVAL)
CASE(c_conn_close_null, (pgspout_conn_close(NULL), 1))
CASE(c_conn_error_null, pgspout_conn_error(NULL) != NULL)
CASE(c_conn_ok_null, pgspout_conn_ok(NULL) == 0)
CASE(c_conn_cancel_null, pgspout_conn_cancel(NULL) == PGSPOUT_EINVAL)
CASE(c_conn_version_null, pgspout_conn_server_version(NULL) == 0)
/* stream_open */
static int c_open_null_conn(void)
{
    pgspout_stream *s = (pgspout_stream *)&F;
    return pgspout_stream_open(NULL, "SELECT 1", 0, NULL, NULL, &s) == PGSPOUT_EINVAL && s == NULL;
}
static int c_open_null_sql(void)
{
    pgspout_stream *s = (pgspout_stream *)&F;
    return pgspout_stream_open(F.idle, NULL, 0, NULL, NULL, &s) == PGSPOUT_EINVAL && s == NULL &&
           *pgspout_conn_error(F.idle);
}
static int c_open_null_out(void)
{
    return pgspout_stream_open(F.idle, "SELECT 1", 0, NULL, NULL, NULL) == PGSPOUT_EINVAL;
}
static int c_open_neg_nparams(void)
{
    pgspout_stream *s = NULL;
    return pgspout_stream_open(F.idle, "SELECT 1", -1, NULL, NULL, &s) == PGSPOUT_EINVAL && !s;
}
static int c_open_big_nparams(void)
{
    static const char *p[1] = {"1"};
    pgspout_stream *s = NULL;
    return pgspout_stream_open(F.idle, "SELECT 1", 65536, p, NULL, &s) == PGSPOUT_EINVAL && !s;
}
static int c_open_null_params(void)
{
    pgspout_stream *s = NULL;
    return pgspout_stream_open(F.idle, "SELECT $1", 1, NULL, NULL, &s) == PGSPOUT_EINVAL && !s;
}
static int c_open_min_gt_max(void)
{
    pgspout_options *o = pgspout_options_new();
    pgspout_options_set(o, "chunk_rows_min", "500");
    pgspout_options_set(o, "chunk_rows_max", "100");
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(F.idle, "SELECT 1", 0, NULL, o, &s);
    pgspout_options_free(o);
    pgspout_stream_close(s);
    return rc == PGSPOUT_EVALUE && rel_contains(pgspout_conn_error(F.idle), "chunk_rows_min");
}
/* next / chunks */
static int c_next_null_s(void)
{
    const pgspout_row *r;
    return pgspout_stream_next(NULL, &r) == PGSPOUT_EINVAL;
}
CASE(c_next_null_row, pgspout_stream_next(F.s, NULL) == PGSPOUT_EINVAL)
static int c_chunk_null_s(void)
{
    const pgspout_chunk *c;
    return pgspout_stream_next_chunk(NULL, 0, &c) == PGSPOUT_EINVAL;
}
CASE(c_chunk_null_out, pgspout_stream_next_chunk(F.s, 0, NULL) == PGSPOUT_EINVAL)
static int c_chunk_bad_flags(void)
{
    const pgspout_chunk *c;
    return pgspout_stream_next_chunk(F.s, 4, &c) == PGSPOUT_EINVAL &&
           pgspout_stream_next_chunk(F.s, -1, &c) == PGSPOUT_EINVAL;
}
CASE(c_chunk_nrows_null, pgspout_chunk_nrows(NULL) == 0)
CASE(c_chunk_row_null, pgspout_chunk_row(NULL, 0) == NULL)
CASE(c_chunk_row_neg, pgspout_chunk_row(F.chunk, -1) == NULL)
CASE(c_chunk_row_end, pgspout_chunk_row(F.chunk, pgspout_chunk_nrows(F.chunk)) == NULL)
CASE(c_chunk_row_max, pgspout_chunk_row(F.chunk, INT_MAX) == NULL)
CASE(c_socket_null, pgspout_stream_socket(NULL) == -1)
CASE(c_wait_ms_null, pgspout_stream_wait_ms(NULL) == -1)
CASE(c_stream_poll_null, pgspout_stream_poll(NULL) == PGSPOUT_EINVAL)
CASE(c_conn_poll_null, pgspout_conn_poll(NULL, NULL, NULL, NULL) == PGSPOUT_EINVAL)
static int c_connect_start_null(void)
{
    pgspout_conn *c = (pgspout_conn *)1;
    return pgspout_connect_start(NULL, NULL, &c) == PGSPOUT_EINVAL && c == NULL &&
           pgspout_connect_start("", NULL, NULL) == PGSPOUT_EINVAL;
}
static int c_stream_start_null(void)
{
    pgspout_stream *s = (pgspout_stream *)1;
    return pgspout_stream_start(NULL, "SELECT 1", 0, NULL, NULL, &s) == PGSPOUT_EINVAL &&
           s == NULL &&
           pgspout_stream_start(NULL, "SELECT 1", 0, NULL, NULL, NULL) == PGSPOUT_EINVAL;
}
/* columns and rows */
CASE(c_ncols_null, pgspout_stream_ncols(NULL) == 0)
CASE(c_colname_null, pgspout_stream_colname(NULL, 0) == NULL)
CASE(c_colname_neg, pgspout_stream_colname(F.s, -1) == NULL)
CASE(c_colname_end, pgspout_stream_colname(F.s, 2) == NULL)
CASE(c_colname_min, pgspout_stream_colname(F.s, INT_MIN) == NULL)
CASE(c_coltype_null, pgspout_stream_coltype(NULL, 0) == 0)
CASE(c_coltype_end, pgspout_stream_coltype(F.s, 99) == 0)
CASE(c_row_ncols_null, pgspout_row_ncols(NULL) == 0)
static int c_row_value_null(void)
{
    size_t l = 77;
    return pgspout_row_value(NULL, 0, &l) == NULL;
}
CASE(c_row_value_neg, pgspout_row_value(F.row, -1, NULL) == NULL)
CASE(c_row_value_end, pgspout_row_value(F.row, 2, NULL) == NULL)
CASE(c_row_value_null_len, pgspout_row_value(F.row, 0, NULL) != NULL)
CASE(c_row_isnull_null, pgspout_row_isnull(NULL, 0) == -1)
CASE(c_row_isnull_end, pgspout_row_isnull(F.row, 5) == -1)
CASE(c_row_isnull_neg, pgspout_row_isnull(F.row, -5) == -1)
static int c_row_json_null_s(void)
{
    const char *j;
    size_t l;
    return pgspout_row_json(NULL, F.row, &j, &l) == PGSPOUT_EINVAL;
}
static int c_row_json_null_row(void)
{
    const char *j;
    size_t l;
    return pgspout_row_json(F.s, NULL, &j, &l) == PGSPOUT_EINVAL;
}
CASE(c_row_json_null_out, pgspout_row_json(F.s, F.row, NULL, NULL) == PGSPOUT_EINVAL)
static int c_row_json_null_len(void)
{
    const char *j = NULL;
    return pgspout_row_json(F.s, F.row, &j, NULL) == PGSPOUT_OK && j && *j == '{';
}
static int c_ndjson_null_s(void)
{
    const char *j;
    size_t l;
    return pgspout_chunk_ndjson(NULL, F.chunk, &j, &l) == PGSPOUT_EINVAL;
}
static int c_ndjson_null_chunk(void)
{
    const char *j;
    size_t l;
    return pgspout_chunk_ndjson(F.s, NULL, &j, &l) == PGSPOUT_EINVAL;
}
CASE(c_ndjson_null_out, pgspout_chunk_ndjson(F.s, F.chunk, NULL, NULL) == PGSPOUT_EINVAL)
/* control */
CASE(c_pause_null, pgspout_stream_pause(NULL) == PGSPOUT_EINVAL)
CASE(c_resume_null, pgspout_stream_resume(NULL) == PGSPOUT_EINVAL)
CASE(c_cancel_null, pgspout_stream_cancel(NULL) == PGSPOUT_EINVAL)
CASE(c_state_null, pgspout_stream_state(NULL) == PGSPOUT_STATE_CLOSED)
CASE(c_close_null, (pgspout_stream_close(NULL), 1))
CASE(c_error_null, pgspout_stream_error(NULL) != NULL)
CASE(c_sqlstate_null, pgspout_stream_sqlstate(NULL) != NULL && !*pgspout_stream_sqlstate(NULL))
CASE(c_errcode_null, pgspout_stream_errcode(NULL) == PGSPOUT_OK)
/* stats */
static int c_stats_null_s(void)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    return pgspout_stream_stats(NULL, &st) == PGSPOUT_EINVAL;
}
CASE(c_stats_null_out, pgspout_stream_stats(F.s, NULL) == PGSPOUT_EINVAL)
static int c_stats_size0(void)
{
    pgspout_stats st = {0};
    return pgspout_stream_stats(F.s, &st) == PGSPOUT_EINVAL;
}
static int c_stats_small(void)
{
    /* an older, smaller struct: only that much is written */
    union {
        pgspout_stats st;
        unsigned char raw[sizeof(pgspout_stats) + 16];
    } u;
    memset(&u, 0xA5, sizeof u);
    size_t small = offsetof(pgspout_stats, rows_received);
    u.st.size = small;
    if (pgspout_stream_stats(F.s, &u.st) != PGSPOUT_OK)
        return 0;
    for (size_t i = small; i < sizeof u.raw; i++)
        if (u.raw[i] != 0xA5)
            return 0;
    return u.st.size == small && u.st.state == PGSPOUT_STATE_RUNNING;
}
static int c_stats_huge_size(void)
{
    /* a newer, bigger struct: the library fills what it knows */
    union {
        pgspout_stats st;
        unsigned char raw[sizeof(pgspout_stats) + 64];
    } u;
    memset(&u, 0xA5, sizeof u);
    u.st.size = sizeof u.raw;
    if (pgspout_stream_stats(F.s, &u.st) != PGSPOUT_OK)
        return 0;
    for (size_t i = sizeof(pgspout_stats); i < sizeof u.raw; i++)
        if (u.raw[i] != 0xA5)
            return 0;
    return u.st.size == sizeof(pgspout_stats);
}
CASE(c_stats_json_null, pgspout_stream_stats_json(NULL) == NULL)
/* metrics */
static int c_metrics_text(void)
{
    char *p = pgspout_metrics_prometheus(), *j = pgspout_metrics_json();
    int ok = p && j && *p && *j == '{';
    pgspout_free(p);
    pgspout_free(j);
    return ok;
}
/* registry */
static int c_reg_open_null_dsn(void)
{
    uint64_t id = 7;
    char *err = NULL;
    int rc = pgspout_registry_open(NULL, "SELECT 1", 0, NULL, NULL, &id, &err);
    int ok = rc == PGSPOUT_EINVAL && id == 0 && err && *err;
    pgspout_free(err);
    return ok;
}
static int c_reg_open_null_sql(void)
{
    uint64_t id = 7;
    return pgspout_registry_open(tu_dsn(), NULL, 0, NULL, NULL, &id, NULL) == PGSPOUT_EINVAL &&
           id == 0;
}
static int c_reg_open_null_id(void)
{
    return pgspout_registry_open(tu_dsn(), "SELECT 1", 0, NULL, NULL, NULL, NULL) == PGSPOUT_EINVAL;
}
static int c_reg_open_null_params(void)
{
    uint64_t id;
    return pgspout_registry_open(tu_dsn(), "SELECT $1", 1, NULL, NULL, &id, NULL) == PGSPOUT_EINVAL;
}
static int c_reg_fetch_unknown(void)
{
    char *out = (char *)&F, *err = NULL;
    size_t len = 9;
    int n = 9;
    int rc = pgspout_registry_fetch(UINT64_MAX, 0, &out, &len, &n, &err);
    int ok = rc == PGSPOUT_ENOTFOUND && out == NULL && len == 0 && n == 0 && err;
    pgspout_free(err);
    return ok;
}
static int c_reg_fetch_null_out(void)
{
    return pgspout_registry_fetch(1, 0, NULL, NULL, NULL, NULL) == PGSPOUT_EINVAL;
}
static int c_reg_fetch_neg_rows(void)
{
    char *out;
    return pgspout_registry_fetch(1, -1, &out, NULL, NULL, NULL) == PGSPOUT_EINVAL;
}
CASE(c_reg_pause_unknown, pgspout_registry_pause(0) == PGSPOUT_ENOTFOUND)
CASE(c_reg_resume_unknown, pgspout_registry_resume(0) == PGSPOUT_ENOTFOUND)
CASE(c_reg_cancel_unknown, pgspout_registry_cancel(0) == PGSPOUT_ENOTFOUND)
CASE(c_reg_close_unknown, pgspout_registry_close(UINT64_MAX) == PGSPOUT_ENOTFOUND)
CASE(c_reg_stats_unknown, pgspout_registry_stats_json(0) == NULL)
static int c_reg_list(void)
{
    char *l = pgspout_registry_list_json();
    int ok = l && *l == '[';
    pgspout_free(l);
    return ok;
}
CASE(c_reg_reap, pgspout_registry_reap() >= 0)

#define ROW(fn, text)                                                                              \
    {                                                                                              \
        text, fn                                                                                   \
    }
static const null_case null_cases[] = {
    ROW(c_strerror_unknown, "pgspout_strerror(12345)"),
    ROW(c_strerror_min, "pgspout_strerror(INT_MIN)"),
    ROW(c_code_name_unknown, "pgspout_code_name(12345) == \"unknown\""),
    ROW(c_state_name_neg, "pgspout_state_name(-1)"),
    ROW(c_state_name_big, "pgspout_state_name(INT_MAX)"),
    ROW(c_free_null, "pgspout_free(NULL)"),
    ROW(c_log_hook_null, "pgspout_set_log_hook(NULL, NULL)"),
    ROW(c_opt_set_null_o, "pgspout_options_set(NULL, k, v) -> EINVAL"),
    ROW(c_opt_set_null_key, "pgspout_options_set(o, NULL, v) -> EINVAL"),
    ROW(c_opt_set_null_value, "pgspout_options_set(o, k, NULL) -> EINVAL"),
    ROW(c_opt_set_empty_key, "pgspout_options_set(o, \"\", v) -> EOPTION"),
    ROW(c_opt_get_null_o, "pgspout_options_get(NULL, k) -> NULL"),
    ROW(c_opt_get_null_key, "pgspout_options_get(o, NULL) -> NULL"),
    ROW(c_opt_get_unknown, "pgspout_options_get(o, unknown) -> NULL"),
    ROW(c_opt_error_null, "pgspout_options_error(NULL)"),
    ROW(c_opt_free_null, "pgspout_options_free(NULL)"),
    ROW(c_opt_filter_null_o, "pgspout_options_set_filter(NULL, fn, ud) -> EINVAL"),
    ROW(c_opt_filter_null_fn, "pgspout_options_set_filter(o, NULL, NULL) -> OK"),
    ROW(c_opt_progress_null_o, "pgspout_options_set_progress(NULL, ...) -> EINVAL"),
    ROW(c_connect_null_dsn, "pgspout_connect(NULL, &c) -> EINVAL, c = NULL"),
    ROW(c_connect_null_out, "pgspout_connect(dsn, NULL) -> EINVAL"),
    ROW(c_connect_opts_null_dsn, "pgspout_connect_opts(NULL, o, &c) -> EINVAL, c = NULL"),
    ROW(c_connect_opts_null_out, "pgspout_connect_opts(dsn, NULL, NULL) -> EINVAL"),
    ROW(c_conn_close_null, "pgspout_conn_close(NULL)"),
    ROW(c_conn_error_null, "pgspout_conn_error(NULL) != NULL"),
    ROW(c_conn_ok_null, "pgspout_conn_ok(NULL) == 0"),
    ROW(c_conn_cancel_null, "pgspout_conn_cancel(NULL) -> EINVAL"),
    ROW(c_conn_version_null, "pgspout_conn_server_version(NULL) == 0"),
    ROW(c_open_null_conn, "pgspout_stream_open(NULL, ...) -> EINVAL, s = NULL"),
    ROW(c_open_null_sql, "pgspout_stream_open(c, NULL, ...) -> EINVAL + conn error"),
    ROW(c_open_null_out, "pgspout_stream_open(..., NULL) -> EINVAL"),
    ROW(c_open_neg_nparams, "pgspout_stream_open(nparams -1) -> EINVAL"),
    ROW(c_open_big_nparams, "pgspout_stream_open(nparams 65536) -> EINVAL"),
    ROW(c_open_null_params, "pgspout_stream_open(nparams 1, params NULL) -> EINVAL"),
    ROW(c_open_min_gt_max, "pgspout_stream_open(chunk_rows_min > max) -> EVALUE"),
    ROW(c_next_null_s, "pgspout_stream_next(NULL, &r) -> EINVAL"),
    ROW(c_next_null_row, "pgspout_stream_next(s, NULL) -> EINVAL"),
    ROW(c_chunk_null_s, "pgspout_stream_next_chunk(NULL, 0, &c) -> EINVAL"),
    ROW(c_chunk_null_out, "pgspout_stream_next_chunk(s, 0, NULL) -> EINVAL"),
    ROW(c_chunk_bad_flags, "pgspout_stream_next_chunk(s, 4 / -1, &c) -> EINVAL"),
    ROW(c_chunk_nrows_null, "pgspout_chunk_nrows(NULL) == 0"),
    ROW(c_chunk_row_null, "pgspout_chunk_row(NULL, 0) == NULL"),
    ROW(c_chunk_row_neg, "pgspout_chunk_row(c, -1) == NULL"),
    ROW(c_chunk_row_end, "pgspout_chunk_row(c, nrows) == NULL"),
    ROW(c_chunk_row_max, "pgspout_chunk_row(c, INT_MAX) == NULL"),
    ROW(c_socket_null, "pgspout_stream_socket(NULL) == -1"),
    ROW(c_wait_ms_null, "pgspout_stream_wait_ms(NULL) == -1"),
    ROW(c_stream_poll_null, "pgspout_stream_poll(NULL) -> EINVAL"),
    ROW(c_conn_poll_null, "pgspout_conn_poll(NULL, ...) -> EINVAL"),
    ROW(c_connect_start_null, "pgspout_connect_start(NULL / out NULL) -> EINVAL, *out NULL"),
    ROW(c_stream_start_null, "pgspout_stream_start(NULL conn / out NULL) -> EINVAL, *out NULL"),
    ROW(c_ncols_null, "pgspout_stream_ncols(NULL) == 0"),
    ROW(c_colname_null, "pgspout_stream_colname(NULL, 0) == NULL"),
    ROW(c_colname_neg, "pgspout_stream_colname(s, -1) == NULL"),
    ROW(c_colname_end, "pgspout_stream_colname(s, ncols) == NULL"),
    ROW(c_colname_min, "pgspout_stream_colname(s, INT_MIN) == NULL"),
    ROW(c_coltype_null, "pgspout_stream_coltype(NULL, 0) == 0"),
    ROW(c_coltype_end, "pgspout_stream_coltype(s, 99) == 0"),
    ROW(c_row_ncols_null, "pgspout_row_ncols(NULL) == 0"),
    ROW(c_row_value_null, "pgspout_row_value(NULL, 0, &len) == NULL"),
    ROW(c_row_value_neg, "pgspout_row_value(r, -1, NULL) == NULL"),
    ROW(c_row_value_end, "pgspout_row_value(r, ncols, NULL) == NULL"),
    ROW(c_row_value_null_len, "pgspout_row_value(r, 0, NULL) != NULL"),
    ROW(c_row_isnull_null, "pgspout_row_isnull(NULL, 0) == -1"),
    ROW(c_row_isnull_end, "pgspout_row_isnull(r, 5) == -1"),
    ROW(c_row_isnull_neg, "pgspout_row_isnull(r, -5) == -1"),
    ROW(c_row_json_null_s, "pgspout_row_json(NULL, r, ...) -> EINVAL"),
    ROW(c_row_json_null_row, "pgspout_row_json(s, NULL, ...) -> EINVAL"),
    ROW(c_row_json_null_out, "pgspout_row_json(s, r, NULL, NULL) -> EINVAL"),
    ROW(c_row_json_null_len, "pgspout_row_json(s, r, &j, NULL) -> OK"),
    ROW(c_ndjson_null_s, "pgspout_chunk_ndjson(NULL, c, ...) -> EINVAL"),
    ROW(c_ndjson_null_chunk, "pgspout_chunk_ndjson(s, NULL, ...) -> EINVAL"),
    ROW(c_ndjson_null_out, "pgspout_chunk_ndjson(s, c, NULL, NULL) -> EINVAL"),
    ROW(c_pause_null, "pgspout_stream_pause(NULL) -> EINVAL"),
    ROW(c_resume_null, "pgspout_stream_resume(NULL) -> EINVAL"),
    ROW(c_cancel_null, "pgspout_stream_cancel(NULL) -> EINVAL"),
    ROW(c_state_null, "pgspout_stream_state(NULL) == CLOSED"),
    ROW(c_close_null, "pgspout_stream_close(NULL)"),
    ROW(c_error_null, "pgspout_stream_error(NULL) != NULL"),
    ROW(c_sqlstate_null, "pgspout_stream_sqlstate(NULL) == \"\""),
    ROW(c_errcode_null, "pgspout_stream_errcode(NULL) == OK"),
    ROW(c_stats_null_s, "pgspout_stream_stats(NULL, &st) -> EINVAL"),
    ROW(c_stats_null_out, "pgspout_stream_stats(s, NULL) -> EINVAL"),
    ROW(c_stats_size0, "pgspout_stream_stats(s, {.size = 0}) -> EINVAL"),
    ROW(c_stats_small, "pgspout_stream_stats(s, smaller struct) writes only .size bytes"),
    ROW(c_stats_huge_size, "pgspout_stream_stats(s, bigger struct) fills what it knows"),
    ROW(c_stats_json_null, "pgspout_stream_stats_json(NULL) == NULL"),
    ROW(c_metrics_text, "pgspout_metrics_prometheus/json"),
    ROW(c_reg_open_null_dsn, "pgspout_registry_open(NULL, ...) -> EINVAL + errmsg"),
    ROW(c_reg_open_null_sql, "pgspout_registry_open(dsn, NULL, ...) -> EINVAL"),
    ROW(c_reg_open_null_id, "pgspout_registry_open(..., id NULL) -> EINVAL"),
    ROW(c_reg_open_null_params, "pgspout_registry_open(nparams 1, params NULL) -> EINVAL"),
    ROW(c_reg_fetch_unknown, "pgspout_registry_fetch(unknown id) -> ENOTFOUND"),
    ROW(c_reg_fetch_null_out, "pgspout_registry_fetch(id, 0, NULL, ...) -> EINVAL"),
    ROW(c_reg_fetch_neg_rows, "pgspout_registry_fetch(id, -1, ...) -> EINVAL"),
    ROW(c_reg_pause_unknown, "pgspout_registry_pause(0) -> ENOTFOUND"),
    ROW(c_reg_resume_unknown, "pgspout_registry_resume(0) -> ENOTFOUND"),
    ROW(c_reg_cancel_unknown, "pgspout_registry_cancel(0) -> ENOTFOUND"),
    ROW(c_reg_close_unknown, "pgspout_registry_close(unknown) -> ENOTFOUND"),
    ROW(c_reg_stats_unknown, "pgspout_registry_stats_json(0) == NULL"),
    ROW(c_reg_list, "pgspout_registry_list_json() is an array"),
    ROW(c_reg_reap, "pgspout_registry_reap() >= 0"),
};

static void test_null_and_range_arguments(void **state)
{
    (void)state;
    assert_int_equal(rel_connect(tu_dsn(), &F.busy), PGSPOUT_OK);
    assert_int_equal(rel_connect(tu_dsn(), &F.idle), PGSPOUT_OK);
    F.o = pgspout_options_new();
    pgspout_options *o = tu_opts("chunk_rows", "10", NULL);
    char sql[128];
    rel_series_sql(sql, sizeof sql, 100);
    assert_int_equal(pgspout_stream_open(F.busy, sql, 0, NULL, o, &F.s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next_chunk(F.s, 0, &F.chunk), PGSPOUT_OK);
    F.row = pgspout_chunk_row(F.chunk, 0);
    assert_non_null(F.row);
    int failed = 0;
    for (size_t i = 0; i < sizeof null_cases / sizeof null_cases[0]; i++) {
        if (!null_cases[i].check()) {
            printf("  FAILED: %s\n", null_cases[i].call);
            failed++;
        }
        bad_inputs_tried++;
    }
    printf("  %zu NULL/range cases, %d failed\n", sizeof null_cases / sizeof null_cases[0], failed);
    /* the stream is intact: it goes on from row 11 with the right values */
    const pgspout_row *r;
    uint64_t n = 10;
    int rc;
    while ((rc = pgspout_stream_next(F.s, &r)) == PGSPOUT_OK)
        assert_int_equal(strtol(pgspout_row_value(r, 0, NULL), NULL, 10), (long)++n);
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(n, 100);
    pgspout_stream_close(F.s);
    rel_expect_series(F.busy, 500);
    rel_expect_series(F.idle, 500);
    pgspout_conn_close(F.busy);
    pgspout_conn_close(F.idle);
    pgspout_options_free(F.o);
    pgspout_options_free(o);
    memset(&F, 0, sizeof F);
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------- malformed options */

typedef struct opt_case {
    const char *key, *value;
    int want;
    const char *want_get; /* pgspout_options_get afterwards (on OK), or NULL */
} opt_case;

static const opt_case opt_cases[] = {
    /* whole numbers */
    {"chunk_rows", "1000", PGSPOUT_OK, "1000"},
    {"chunk_rows", "+5", PGSPOUT_OK, "5"},
    {"chunk_rows", "0", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "-1", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "10000001", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "99999999999999999999", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "9223372036854775808", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "1e3", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", " 5", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "5 ", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "5.0", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "NaN", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "0x10", PGSPOUT_EVALUE, NULL},
    {"chunk_rows", "\xef\xbc\x95", PGSPOUT_EVALUE, NULL}, /* fullwidth 5 */
    {"chunk_rows", "5\n", PGSPOUT_EVALUE, NULL},
    {"max_rows", "0", PGSPOUT_OK, "0"},
    {"max_rows", "9223372036854775807", PGSPOUT_OK, "9223372036854775807"},
    {"max_rows", "-0", PGSPOUT_EVALUE, NULL},
    {"keepalives_count", "1001", PGSPOUT_EVALUE, NULL},
    /* sizes */
    {"max_memory", "64MB", PGSPOUT_OK, "67108864"},
    {"max_memory", "1.5MB", PGSPOUT_OK, "1572864"},
    {"max_memory", "2048 kB", PGSPOUT_OK, "2097152"},
    {"max_memory", "1024", PGSPOUT_OK, "1024"},
    {"max_memory", "1023", PGSPOUT_EVALUE, NULL},
    {"max_memory", "0", PGSPOUT_EVALUE, NULL},
    {"max_memory", "-1", PGSPOUT_EVALUE, NULL},
    {"max_memory", "-64MB", PGSPOUT_EVALUE, NULL},
    {"max_memory", "64mb", PGSPOUT_EVALUE, NULL},
    {"max_memory", "64 XB", PGSPOUT_EVALUE, NULL},
    {"max_memory", "64MBx", PGSPOUT_EVALUE, NULL},
    {"max_memory", "1e3", PGSPOUT_EVALUE, NULL},
    {"max_memory", " 5MB", PGSPOUT_EVALUE, NULL},
    {"max_memory", "99999999999999999999", PGSPOUT_EVALUE, NULL},
    {"max_memory", "9999999TB", PGSPOUT_EVALUE, NULL},
    {"max_memory", "NaN", PGSPOUT_EVALUE, NULL},
    {"max_memory", "inf", PGSPOUT_EVALUE, NULL},
    {"max_memory", ".", PGSPOUT_EVALUE, NULL},
    {"max_memory", "1..5MB", PGSPOUT_EVALUE, NULL},
    {"max_memory", "", PGSPOUT_EVALUE, NULL},
    {"chunk_bytes", "0.4", PGSPOUT_EVALUE, NULL},
    /* durations */
    {"timeout", "30s", PGSPOUT_OK, "30000ms"},
    {"timeout", "0", PGSPOUT_OK, "0ms"},
    {"timeout", "250ms", PGSPOUT_OK, "250ms"},
    {"timeout", "1.5h", PGSPOUT_OK, "5400000ms"},
    {"timeout", "5 min", PGSPOUT_OK, "300000ms"},
    {"timeout", "100us", PGSPOUT_OK, "1ms"},
    {"timeout", "5", PGSPOUT_OK, "5000ms"},
    {"timeout", "-1s", PGSPOUT_EVALUE, NULL},
    {"timeout", "-1", PGSPOUT_EVALUE, NULL},
    {"timeout", "1e3", PGSPOUT_EVALUE, NULL},
    {"timeout", " 5", PGSPOUT_EVALUE, NULL},
    {"timeout", "NaN", PGSPOUT_EVALUE, NULL},
    {"timeout", "5m", PGSPOUT_EVALUE, NULL},
    {"timeout", "5S", PGSPOUT_EVALUE, NULL},
    {"timeout", "s", PGSPOUT_EVALUE, NULL},
    {"timeout", "99999999999999999999", PGSPOUT_EVALUE, NULL},
    {"timeout", "", PGSPOUT_EVALUE, NULL},
    {"statement_timeout", "24d", PGSPOUT_OK, "2073600000ms"},
    {"statement_timeout", "25d", PGSPOUT_EVALUE, NULL},
    {"connect_timeout", "-5s", PGSPOUT_EVALUE, NULL},
    /* fractions, rates */
    {"memory_warn", "0.5", PGSPOUT_OK, "0.5"},
    {"memory_warn", "1", PGSPOUT_OK, "1"},
    {"memory_warn", "0", PGSPOUT_EVALUE, NULL},
    {"memory_warn", "1.01", PGSPOUT_EVALUE, NULL},
    {"memory_warn", "-0.5", PGSPOUT_EVALUE, NULL},
    {"memory_warn", "NaN", PGSPOUT_EVALUE, NULL},
    {"memory_fail", "50%", PGSPOUT_EVALUE, NULL},
    {"max_rate", "5000", PGSPOUT_OK, "5000"},
    {"max_rate", "5000/s", PGSPOUT_OK, "5000"},
    {"max_rate", "-1", PGSPOUT_EVALUE, NULL},
    {"max_rate", "1e13", PGSPOUT_EVALUE, NULL},
    {"max_rate", "10000000000000", PGSPOUT_EVALUE, NULL},
    {"max_rate", "5000/min", PGSPOUT_EVALUE, NULL},
    /* enums, booleans, labels */
    {"on_pause_timeout", "cancel", PGSPOUT_OK, "cancel"},
    {"on_pause_timeout", "CANCEL", PGSPOUT_EVALUE, NULL},
    {"on_pause_timeout", "cancel ", PGSPOUT_EVALUE, NULL},
    {"on_pause_timeout", "resume|cancel", PGSPOUT_EVALUE, NULL},
    {"on_pause_timeout", "", PGSPOUT_EVALUE, NULL},
    /* rows is a binding option: the bindings take it out, the core refuses it */
    {"rows", "json", PGSPOUT_EOPTION, NULL},
    {"metrics", "OFF", PGSPOUT_OK, "off"},
    {"metrics", "yes", PGSPOUT_OK, "on"},
    {"metrics", "2", PGSPOUT_EVALUE, NULL},
    {"metrics", "", PGSPOUT_EVALUE, NULL},
    {"adaptive_chunking", "maybe", PGSPOUT_EVALUE, NULL},
    {"label", "etl.orders:v2-x_1", PGSPOUT_OK, "etl.orders:v2-x_1"},
    {"label", "", PGSPOUT_EVALUE, NULL},
    {"label", "a b", PGSPOUT_EVALUE, NULL},
    {"label", "a\"b", PGSPOUT_EVALUE, NULL},
    {"label", "a\\b", PGSPOUT_EVALUE, NULL},
    {"label", "a}b", PGSPOUT_EVALUE, NULL},
    {"label", "\xc3\xa9t\xc3\xa9", PGSPOUT_EVALUE, NULL},
    {"label", "a\nb", PGSPOUT_EVALUE, NULL},
    /* unknown keys */
    {"chunk-rows", "1", PGSPOUT_EOPTION, NULL},
    {"Chunk_rows", "1", PGSPOUT_EOPTION, NULL},
    {"chunk_rows ", "1", PGSPOUT_EOPTION, NULL},
    {"password", "x", PGSPOUT_EOPTION, NULL},
};

static void test_malformed_options(void **state)
{
    (void)state;
    int failed = 0;
    pgspout_options *o = pgspout_options_new();
    assert_non_null(o);
    for (size_t i = 0; i < sizeof opt_cases / sizeof opt_cases[0]; i++) {
        const opt_case *c = &opt_cases[i];
        /* the value before, to check a failed set leaves it alone */
        char before[128] = "";
        const char *b = pgspout_options_get(o, c->key);
        if (b)
            snprintf(before, sizeof before, "%s", b);
        int rc = pgspout_options_set(o, c->key, c->value);
        const char *after = pgspout_options_get(o, c->key);
        int ok = rc == c->want;
        if (ok && rc == PGSPOUT_OK && c->want_get)
            ok = after && strcmp(after, c->want_get) == 0;
        if (ok && rc != PGSPOUT_OK) {
            ok = strcmp(before, after ? after : "") == 0 && *pgspout_options_error(o);
            /* the message names the key */
            char key64[65];
            snprintf(key64, sizeof key64, "%s", c->key);
            ok = ok && rel_contains(pgspout_options_error(o), key64);
        }
        if (!ok) {
            printf("  FAILED: set(%s, \"%s\") = %s (want %s), get = %s, error = %s\n", c->key,
                   c->value, pgspout_code_name(rc), pgspout_code_name(c->want),
                   after ? after : "(null)", pgspout_options_error(o));
            failed++;
        }
        bad_inputs_tried++;
    }
    /* long keys and values: messages stay bounded, no overflow */
    char *huge = malloc(100001);
    memset(huge, '9', 100000);
    huge[100000] = '\0';
    assert_int_equal(pgspout_options_set(o, huge, "1"), PGSPOUT_EOPTION);
    assert_true(strlen(pgspout_options_error(o)) < 256);
    assert_int_equal(pgspout_options_set(o, "chunk_rows", huge), PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(o, "max_memory", huge), PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(o, "timeout", huge), PGSPOUT_EVALUE);
    assert_int_equal(pgspout_options_set(o, "label", huge), PGSPOUT_EVALUE);
    assert_true(strlen(pgspout_options_error(o)) < 256);
    free(huge);
    bad_inputs_tried += 5;
    pgspout_options_free(o);
    printf("  %zu option cases, %d failed\n", sizeof opt_cases / sizeof opt_cases[0], failed);
    assert_int_equal(failed, 0);
}

/* Values the parser accepts must work as limits: a deadline far in the
 * future (1000000 days is 8.64e13 ms, inside the accepted range) is no
 * deadline at all, not an instant timeout. */
static void *resume_later(void *arg)
{
    tu_sleep_ms(200);
    pgspout_stream_resume(arg);
    return NULL;
}

static void test_huge_accepted_durations(void **state)
{
    (void)state;
    pgspout_conn *c = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    static const char *const keys[] = {"timeout", "pause_timeout", "progress_interval"};
    int failed = 0;
    for (size_t k = 0; k < 3; k++) {
        /* past ~146 years a duration is out of range, said plainly; the
         * largest accepted one must not overflow the deadline arithmetic */
        pgspout_options *big = pgspout_options_new();
        assert_int_equal(pgspout_options_set(big, keys[k], "1000000d"), PGSPOUT_EVALUE);
        assert_non_null(strstr(pgspout_options_error(big), "out of range"));
        pgspout_options_free(big);
        pgspout_options *o =
            tu_opts(keys[k], "50000d", "chunk_rows", "100", "on_pause_timeout", "cancel", NULL);
        char sql[128], hex[33], err[512];
        rel_series_sql(sql, sizeof sql, 1000);
        uint64_t n = 0;
        pgspout_stream *s = NULL;
        int rc = pgspout_stream_open(c, sql, 0, NULL, o, &s);
        if (rc == PGSPOUT_OK) {
            pthread_t th;
            if (k == 1) { /* paused; resumed 200 ms later by another thread */
                pgspout_stream_pause(s);
                pthread_create(&th, NULL, resume_later, s);
            }
            rc = rel_drain_md5(s, &n, hex);
            if (k == 1)
                pthread_join(th, NULL);
        }
        snprintf(err, sizeof err, "%s", s ? pgspout_stream_error(s) : pgspout_conn_error(c));
        pgspout_stream_close(s);
        if (rc != PGSPOUT_DONE || n != 1000) {
            printf("  FAILED: %s=50000d: %s after %llu rows: %s\n", keys[k], pgspout_code_name(rc),
                   (unsigned long long)n, err);
            failed++;
        }
        pgspout_options_free(o);
        bad_inputs_tried++;
        rel_expect_series(c, 500);
    }
    pgspout_conn_close(c);
    assert_int_equal(failed, 0);
}

/* --------------------------------------------------------- bad DSNs */
/* The header: every connection failure, a malformed conninfo included, is
 * ECONNECT with a failed handle whose pgspout_conn_error says why. */

typedef struct dsn_case {
    const char *dsn;
    int want1, want2;    /* accepted codes */
    const char *mention; /* the message mentions this (case-sensitive), or NULL */
} dsn_case;

static const dsn_case dsn_cases[] = {
    {"host=", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"port=abc host=127.0.0.1", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, "port"},
    {"postgres://[bad", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, "invalid connection string"},
    {"postgresql://host:notaport/db", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, "port"},
    {"postgresql://%zz@localhost/db", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"nonsense", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"host='unterminated", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"nosuchkeyword=1", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, "nosuchkeyword"},
    {"host=127.0.0.1 port=1", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"hostaddr=999.1.1.1", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"host=127.0.0.1 sslmode=bogus", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, "sslmode"},
    {"host=no-such-host.invalid connect_timeout=2", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
    {"host=/nonexistent/socket/dir", PGSPOUT_ECONNECT, PGSPOUT_ECONNECT, NULL},
};

static void check_failed_handle(pgspout_conn *c, const char *what, int *failed)
{
    if (c == NULL) {
        printf("  FAILED: %s: no handle to read the error from\n", what);
        (*failed)++;
        return;
    }
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, "SELECT 1", 0, NULL, NULL, &s);
    if (pgspout_conn_ok(c) != 0 || !*pgspout_conn_error(c) || rc != PGSPOUT_ECONN || s != NULL) {
        printf("  FAILED: %s: failed handle: ok=%d open=%s error=%s\n", what, pgspout_conn_ok(c),
               pgspout_code_name(rc), pgspout_conn_error(c));
        (*failed)++;
    }
    pgspout_stream_close(s);
    pgspout_conn_close(c);
}

static void test_invalid_dsns(void **state)
{
    (void)state;
    /* libpq fills blanks from the environment: make the outcome ours */
    static const char *const env[] = {"PGHOST",     "PGHOSTADDR", "PGPORT",    "PGUSER",
                                      "PGDATABASE", "PGSERVICE",  "PGSSLMODE", "PGCONNECT_TIMEOUT"};
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        unsetenv(env[i]);
    int failed = 0;
    for (size_t i = 0; i < sizeof dsn_cases / sizeof dsn_cases[0]; i++) {
        const dsn_case *d = &dsn_cases[i];
        pgspout_conn *c = NULL;
        int rc = pgspout_connect(d->dsn, &c);
        const char *msg = c ? pgspout_conn_error(c) : "(no handle)";
        printf("  connect(\"%s\") = %s: %s\n", d->dsn, pgspout_code_name(rc), msg);
        if ((rc != d->want1 && rc != d->want2) || (d->mention && !rel_contains(msg, d->mention))) {
            printf("  FAILED: connect(\"%s\") = %s, wanted %s%s%s%s%s\n", d->dsn,
                   pgspout_code_name(rc), pgspout_code_name(d->want1),
                   d->want2 != d->want1 ? " or " : "",
                   d->want2 != d->want1 ? pgspout_code_name(d->want2) : "",
                   d->mention ? ", message mentioning " : "", d->mention ? d->mention : "");
            failed++;
        }
        check_failed_handle(c, d->dsn, &failed);
        bad_inputs_tried++;
    }
    /* a conninfo of 100 kB */
    char *big = malloc(100050);
    strcpy(big, "application_name=");
    memset(big + 17, 'a', 100000);
    strcpy(big + 100017, " host=127.0.0.1 port=1");
    pgspout_conn *c = NULL;
    int rc = pgspout_connect(big, &c);
    assert_int_equal(rc, PGSPOUT_ECONNECT);
    check_failed_handle(c, "100 kB conninfo", &failed);
    free(big);
    /* a database that does not exist, on the real server */
    char dsn[1024];
    snprintf(dsn, sizeof dsn, "%s dbname=no_such_db_pgspout", tu_dsn());
    c = NULL;
    rc = pgspout_connect(dsn, &c);
    if (rc != PGSPOUT_ECONNECT || !rel_contains(pgspout_conn_error(c), "no_such_db_pgspout")) {
        printf("  FAILED: unknown database: %s: %s\n", pgspout_code_name(rc),
               c ? pgspout_conn_error(c) : "");
        failed++;
    }
    check_failed_handle(c, "unknown database", &failed);
    bad_inputs_tried += 2;
    /* connect_opts with a bad connection option value */
    pgspout_options *o = tu_opts("connect_timeout", "1s", NULL);
    c = NULL;
    rc = pgspout_connect_opts("postgres://[bad", o, &c);
    if (rc != PGSPOUT_ECONNECT) {
        printf("  FAILED: connect_opts(bad uri) = %s\n", pgspout_code_name(rc));
        failed++;
    }
    check_failed_handle(c, "connect_opts bad uri", &failed);
    pgspout_options_free(o);
    bad_inputs_tried++;
    assert_int_equal(failed, 0);
}

/* ---------------------------------------------------------- SQL cases */

typedef struct sql_case {
    const char *name;
    const char *sql;
    int nparams;
    const char *params[3];
    int want_open;
    int want_rc;    /* code that ends the stream */
    long want_rows; /* rows delivered before it (-1 = any) */
    const char *sqlstate;
} sql_case;

static const sql_case sql_cases[] = {
    {"division by zero before the first row",
     "SELECT 1 / 0",
     0,
     {0},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "22012"},
    {"syntax error", "SELEC 1", 0, {0}, PGSPOUT_ESQL, PGSPOUT_ESQL, 0, "42601"},
    {"unknown table",
     "SELECT * FROM no_such_table_pgspout",
     0,
     {0},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "42P01"},
    {"error after the first rows",
     "SELECT i, 1 / (5 - i) FROM generate_series(1, 10) i",
     0,
     {0},
     PGSPOUT_OK,
     PGSPOUT_ESQL,
     4,
     "22012"},
    {"error after many rows",
     "SELECT i, 1 / (5000 - i) FROM generate_series(1, 10000) i",
     0,
     {0},
     PGSPOUT_OK,
     PGSPOUT_ESQL,
     4999,
     "22012"},
    {"too few parameters", "SELECT $1::int", 0, {0}, PGSPOUT_ESQL, PGSPOUT_ESQL, 0, "08P01"},
    {"too many parameters",
     "SELECT $1::int",
     2,
     {"1", "2"},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "08P01"},
    {"parameter of the wrong type",
     "SELECT $1::int",
     1,
     {"abc"},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "22P02"},
    {"NULL parameter",
     "SELECT 1 AS i, $1::int IS NULL",
     1,
     {NULL},
     PGSPOUT_OK,
     PGSPOUT_DONE,
     1,
     ""},
    {"invalid UTF-8 parameter",
     "SELECT length($1)",
     1,
     {"ab\xff\xfe"},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "22021"},
    {"truncated UTF-8 parameter",
     "SELECT length($1)",
     1,
     {"\xe2\x82"},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "22021"},
    {"overlong UTF-8 parameter",
     "SELECT length($1)",
     1,
     {"\xc0\xaf"},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "22021"},
    {"injection-looking parameter is data",
     "SELECT 1 AS i, $1::text = 'x''; DROP TABLE t; --'",
     1,
     {"x'; DROP TABLE t; --"},
     PGSPOUT_OK,
     PGSPOUT_DONE,
     1,
     ""},
    {"two statements", "SELECT 1; SELECT 2", 0, {0}, PGSPOUT_ESQL, PGSPOUT_ESQL, 0, "42601"},
    {"empty query", "", 0, {0}, PGSPOUT_OK, PGSPOUT_DONE, 0, ""},
    {"comment only", "-- nothing", 0, {0}, PGSPOUT_OK, PGSPOUT_DONE, 0, ""},
    {"a command (no rows)",
     "SET application_name = 'pgspout_bad_input'",
     0,
     {0},
     PGSPOUT_OK,
     PGSPOUT_DONE,
     0,
     ""},
    {"COPY TO STDOUT",
     "COPY (SELECT generate_series(1, 1000)) TO STDOUT",
     0,
     {0},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "0A000"},
    {"COPY FROM STDIN",
     "COPY pg_temp.rel_copy_target FROM STDIN",
     0,
     {0},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     ""},
    {"error inside a transaction block", "BEGIN", 0, {0}, PGSPOUT_OK, PGSPOUT_DONE, 0, ""},
    {"  ... failing statement in it",
     "SELECT 1 / 0",
     0,
     {0},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "22012"},
    {"  ... aborted transaction refuses",
     "SELECT 1",
     0,
     {0},
     PGSPOUT_ESQL,
     PGSPOUT_ESQL,
     0,
     "25P02"},
    {"  ... rollback", "ROLLBACK", 0, {0}, PGSPOUT_OK, PGSPOUT_DONE, 0, ""},
};

static void test_sql_errors_and_params(void **state)
{
    (void)state;
    pgspout_conn *c = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    char *t = tu_try_scalar(c, "CREATE TEMP TABLE rel_copy_target (i int)", 0, NULL);
    free(t);
    int failed = 0, chunked = strcmp(pgspout_transport(), "chunked") == 0;
    for (size_t k = 0; k < sizeof sql_cases / sizeof sql_cases[0]; k++) {
        const sql_case *q = &sql_cases[k];
        /* the chunked transport hands rows over in whole chunks (1000, the
         * default chunk_rows), and libpq drops an incomplete one when the
         * server's error arrives: the open itself then meets the error */
        long want_rows = q->want_rows;
        int want_open = q->want_open;
        if (chunked && q->want_rc == PGSPOUT_ESQL && want_rows > 0) {
            want_rows -= want_rows % 1000;
            if (want_rows == 0)
                want_open = PGSPOUT_ESQL;
        }
        pgspout_stream *s = NULL;
        int orc = pgspout_stream_open(c, q->sql, q->nparams, q->params, NULL, &s);
        int rc = orc;
        long n = 0;
        const pgspout_row *r;
        if (orc == PGSPOUT_OK)
            while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
                n++;
        const char *st = s ? pgspout_stream_sqlstate(s) : "";
        int ok = orc == want_open && rc == q->want_rc && (want_rows < 0 || n == want_rows) &&
                 (!*q->sqlstate || strcmp(st, q->sqlstate) == 0);
        if (ok && rc < 0)
            ok = s && pgspout_stream_state(s) == PGSPOUT_STATE_FAILED &&
                 pgspout_stream_errcode(s) == rc && *pgspout_stream_error(s) &&
                 pgspout_stream_next(s, &r) == rc;
        if (!ok) {
            printf("  FAILED: %s: open=%s rc=%s rows=%ld sqlstate=%s: %s\n", q->name,
                   pgspout_code_name(orc), pgspout_code_name(rc), n, st,
                   s ? pgspout_stream_error(s) : pgspout_conn_error(c));
            failed++;
        }
        pgspout_stream_close(s);
        if (pgspout_conn_ok(c) != 1) {
            printf("  FAILED: %s: the connection is broken afterwards: %s\n", q->name,
                   pgspout_conn_error(c));
            failed++;
            pgspout_conn_close(c);
            assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
        }
        /* inside the transaction block cases the check would abort it */
        if (q->name[0] != ' ' && strcmp(q->sql, "BEGIN") != 0)
            rel_expect_series(c, 500);
        bad_inputs_tried++;
    }
    pgspout_conn_close(c);
    assert_int_equal(failed, 0);
}

/* A 50 MB text parameter arrives intact (md5 computed by the server), and
 * comes back intact as a value. */
static void test_huge_parameter(void **state)
{
    (void)state;
    pgspout_conn *c = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    size_t n = 50u << 20;
    char *p = malloc(n + 1);
    assert_non_null(p);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) { /* printable ASCII, xorshift */
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (char)(' ' + x % 95);
    }
    p[n] = '\0';
    tu_md5 m;
    char want[33];
    tu_md5_init(&m);
    tu_md5_update(&m, p, n);
    tu_md5_hex(&m, want);
    const char *params[] = {p};
    pgspout_options *o = tu_opts("max_memory", "256MB", NULL);
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, "SELECT md5($1), length($1), $1", 1, params, o, &s);
    if (rc != PGSPOUT_OK)
        fail_msg("open: %s: %s", pgspout_code_name(rc), s ? pgspout_stream_error(s) : "");
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    assert_string_equal(pgspout_row_value(r, 0, NULL), want);
    char len[32];
    snprintf(len, sizeof len, "%zu", n);
    assert_string_equal(pgspout_row_value(r, 1, NULL), len);
    size_t vl = 0;
    const char *v = pgspout_row_value(r, 2, &vl);
    assert_int_equal(vl, n);
    assert_memory_equal(v, p, n);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    pgspout_stream_close(s);
    /* over the stream's max_memory the value is refused, cleanly */
    pgspout_options *small = tu_opts("max_memory", "16MB", NULL);
    s = NULL;
    rc = pgspout_stream_open(c, "SELECT $1", 1, params, small, &s);
    pgspout_options_free(small);
    assert_int_equal(rc, PGSPOUT_EMEMORY);
    assert_true(rel_contains(pgspout_stream_error(s), "max_memory"));
    pgspout_stream_close(s);
    rel_expect_series(c, 500);
    pgspout_options_free(o);
    pgspout_conn_close(c);
    free(p);
    bad_inputs_tried += 2;
}

/* ------------------------------------------- closed and busy handles */

static void test_stream_after_conn_close(void **state)
{
    (void)state;
    /* conn_close with a stream open: the stream reports ESTATE, state
     * CLOSED; control calls say ESTATE; stream_close is safe afterwards */
    pgspout_conn *a = NULL, *b = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &a), PGSPOUT_OK);
    assert_int_equal(rel_connect(tu_dsn(), &b), PGSPOUT_OK);
    pgspout_options *o = tu_opts("chunk_rows", "10", NULL);
    pgspout_stream *s = NULL;
    char sql[128];
    rel_series_sql(sql, sizeof sql, 100000);
    assert_int_equal(pgspout_stream_open(a, sql, 0, NULL, o, &s), PGSPOUT_OK);
    const pgspout_row *r;
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    pgspout_conn_close(a);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_ESTATE);
    const pgspout_chunk *ch;
    assert_int_equal(pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, &ch), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_CLOSED);
    assert_int_equal(pgspout_stream_errcode(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_pause(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_resume(s), PGSPOUT_ESTATE);
    assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_ESTATE);
    pgspout_stats st = PGSPOUT_STATS_INIT;
    assert_int_equal(pgspout_stream_stats(s, &st), PGSPOUT_OK);
    assert_int_equal(st.state, PGSPOUT_STATE_CLOSED);
    char *js = pgspout_stream_stats_json(s);
    assert_non_null(js);
    pgspout_free(js);
    assert_true(*pgspout_stream_error(s));
    (void)pgspout_stream_socket(s);
    (void)pgspout_stream_wait_ms(s);
    pgspout_stream_close(s);
    /* the other handle is untouched; close it after its stream is closed */
    rel_expect_series(b, 500);
    s = NULL;
    assert_int_equal(pgspout_stream_open(b, sql, 0, NULL, o, &s), PGSPOUT_OK);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
    pgspout_stream_close(s);
    rel_expect_series(b, 500);
    pgspout_conn_close(b);
    /* a stream that already ended, then its connection closed */
    pgspout_conn *c = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELECT 1", 0, NULL, NULL, &s), PGSPOUT_OK);
    while (pgspout_stream_next(s, &r) == PGSPOUT_OK)
        ;
    pgspout_conn_close(c);
    assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_DONE);
    assert_int_equal(pgspout_stream_state(s), PGSPOUT_STATE_DONE);
    pgspout_stream_close(s);
    /* close of a connection that failed to connect, and of one that never
     * ran anything */
    pgspout_conn *bad = NULL;
    assert_int_equal(pgspout_connect("host=127.0.0.1 port=1", &bad), PGSPOUT_ECONNECT);
    pgspout_conn_close(bad);
    pgspout_conn *unused = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &unused), PGSPOUT_OK);
    pgspout_conn_close(unused);
    pgspout_options_free(o);
    bad_inputs_tried += 4;
}

typedef struct second_open {
    pgspout_conn *c;
    int rc;
    pgspout_stream *s;
} second_open;

static void *second_open_main(void *arg)
{
    second_open *so = arg;
    so->rc = pgspout_stream_open(so->c, "SELECT 2", 0, NULL, NULL, &so->s);
    return NULL;
}

static void test_two_threads_one_connection(void **state)
{
    (void)state;
    pgspout_conn *c = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    char sql[128], msql[128];
    rel_series_sql(sql, sizeof sql, 20000);
    rel_series_md5_sql(msql, sizeof msql, 20000);
    char *want = tu_try_scalar(c, msql, 0, NULL);
    assert_non_null(want);
    pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_open(c, sql, 0, NULL, o, &s), PGSPOUT_OK);
    tu_md5 m;
    tu_md5_init(&m);
    uint64_t n = 0;
    const pgspout_row *r;
    int rc, busy = 0;
    while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK) {
        if (n++)
            tu_md5_update(&m, "\n", 1);
        size_t l0, l1;
        const char *v0 = pgspout_row_value(r, 0, &l0), *v1 = pgspout_row_value(r, 1, &l1);
        tu_md5_update(&m, v0, l0);
        tu_md5_update(&m, ",", 1);
        tu_md5_update(&m, v1, l1);
        if (n % 2000 == 0) { /* another thread tries to open on the same conn */
            second_open so = {.c = c};
            pthread_t th;
            pthread_create(&th, NULL, second_open_main, &so);
            pthread_join(th, NULL);
            if (so.rc == PGSPOUT_EBUSY && so.s == NULL)
                busy++;
            else
                printf("  second open from another thread: %s\n", pgspout_code_name(so.rc));
            pgspout_stream_close(so.s);
            bad_inputs_tried++;
        }
    }
    char hex[33];
    tu_md5_hex(&m, hex);
    assert_int_equal(rc, PGSPOUT_DONE);
    assert_int_equal(n, 20000);
    assert_string_equal(hex, want);
    assert_int_equal(busy, 10);
    assert_true(rel_contains(pgspout_conn_error(c), "another stream"));
    /* and on the owner thread, with the same message */
    pgspout_stream_close(s);
    s = NULL;
    assert_int_equal(pgspout_stream_open(c, sql, 0, NULL, o, &s), PGSPOUT_OK);
    pgspout_stream *s2 = (pgspout_stream *)&m;
    assert_int_equal(pgspout_stream_open(c, "SELECT 1", 0, NULL, NULL, &s2), PGSPOUT_EBUSY);
    assert_null(s2);
    pgspout_stream_close(s);
    rel_expect_series(c, 500);
    pgspout_conn_close(c);
    pgspout_options_free(o);
    free(want);
}

/* The header: "The library never prints". Server notices and warnings must
 * not reach the process's stderr (libpq's default notice processor prints
 * them there unless the library installs its own). */
static void test_library_never_prints(void **state)
{
    (void)state;
    char path[] = "/tmp/pgspout-stderr.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    pgspout_conn *c = NULL;
    int rc = rel_connect(tu_dsn(), &c);
    if (rc == PGSPOUT_OK) {
        free(tu_try_scalar(c,
                           "DO $$ BEGIN RAISE NOTICE 'pgspout-notice'; "
                           "RAISE WARNING 'pgspout-warning'; END $$",
                           0, NULL));
        free(tu_try_scalar(c, "DROP TABLE IF EXISTS pgspout_no_such_table", 0, NULL));
    }
    pgspout_conn_close(c);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[1024] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_int_equal(rc, PGSPOUT_OK);
    if (n > 0) {
        buf[n] = '\0';
        fail_msg("the library wrote to stderr:\n%s", buf);
    }
    bad_inputs_tried++;
}

/* ----------------------------------------------------------------- main */

static int group_teardown(void **state)
{
    (void)state;
    printf("bad inputs tried: %d\n", bad_inputs_tried);
    return 0;
}

int main(void)
{
    int gate = tu_db_gate("test_bad_input");
    if (gate >= 0)
        return gate;
    setvbuf(stdout, NULL, _IOLBF, 0);
    rel_filters();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_and_range_arguments),
        cmocka_unit_test(test_malformed_options),
        cmocka_unit_test(test_huge_accepted_durations),
        cmocka_unit_test(test_invalid_dsns),
        cmocka_unit_test(test_sql_errors_and_params),
        cmocka_unit_test(test_huge_parameter),
        cmocka_unit_test(test_stream_after_conn_close),
        cmocka_unit_test(test_two_threads_one_connection),
        cmocka_unit_test(test_library_never_prints),
    };
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
