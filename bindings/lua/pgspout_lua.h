/* pgspout_lua.h - the hand-written C of the Lua module (convert.c), used by
 * the typemaps and %extend bodies of swig/lua.i.
 *
 * Lua errors are longjmps: a C resource that must be freed is owned by a
 * userdata with a __gc metamethod before any Lua call that may raise. */
#ifndef PGSPOUT_LUA_H
#define PGSPOUT_LUA_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

#include "pgspout.h"

/* Row shapes of pgspout_lua_push_rows (the `rows` option: tuple, dict, json) */
enum { PGSPOUT_LUA_ARRAY = 0, PGSPOUT_LUA_MAP = 1, PGSPOUT_LUA_JSON = 2 };

/* Push rows of c (a chunk of s) as one table of rows: arrays, tables keyed
 * by column name, or JSON text. All of them when values is 0, else as many
 * as hold about that many values (at least one row). */
void pgspout_lua_push_rows(lua_State *L, pgspout_stream *s, const pgspout_chunk *c, int mode,
                           int values);
/* Push st as a table built from pgspout_stats_fields (state by name). */
void pgspout_lua_push_stats(lua_State *L, const pgspout_stats *st);
/* A pool snapshot as a table {max_size, total, idle, in_use, waiting,
 * acquires, waits, timeouts, created, closed}. */
void pgspout_lua_push_pool_stats(lua_State *L, const pgspout_pool_stats *st);

/* A fresh GC-owned slot for a pointer the library hands over, freed with
 * free_fn (NULL: pgspout_free) by __gc unless taken back. Pushes the box. */
void **pgspout_lua_box(lua_State *L, void (*free_fn)(void *));
/* Push *box as a string (len (size_t)-1 = strlen) or nil when NULL, then
 * free it and empty the box. */
void pgspout_lua_push_boxed(lua_State *L, void **box, size_t len);

/* The string (or number) at idx as a C string, for every Lua string the
 * binding hands to the library: lua_tolstring, except that a string with an
 * embedded NUL byte - which the C side would silently cut short - raises
 * "pgspout: einval: <what> contains a NUL byte", what being formatted from
 * fmt and the arguments as by lua_pushfstring (only on that error). Returns
 * NULL for values that are not strings or numbers (callers check types). */
const char *pgspout_lua_cstring(lua_State *L, int idx, const char *fmt, ...);

/* The Lua value at idx (a table of parameters or nil) as a C array of text
 * values: strings as they are, numbers exactly (integers without exponent),
 * booleans "true"/"false", pgspout.null/nil holes as SQL NULL, sequence
 * tables as PostgreSQL array literals (nested tables for more dimensions,
 * every element double-quoted and backslash-escaped, NULL for
 * pgspout.null/nil; ragged nesting, tables with other keys and more than 6
 * dimensions raise; no elements at all is "{}"). The length
 * is t.n when present, else #t. The array and converted strings are kept
 * alive by values pushed on the stack. Raises on a value of another type or
 * a string with a NUL byte. Returns NULL when there are no parameters. */
const char *const *pgspout_lua_params(lua_State *L, int idx, int *n);

/* The Lua table at idx as a partition plan's spec (pgspout_plan_make):
 * fields table, where, key, snapshot (strings), npartitions (an integer),
 * columns (strings), params and bounds (values as pgspout_lua_params takes
 * them). Raises on an unknown field or a wrong type. Strings stay alive in
 * the table; the lists' arrays are pushed on the stack. */
void pgspout_lua_plan_spec(lua_State *L, int idx, pgspout_plan_spec *spec);
/* Push n text values as an array {v1, ..., n = n}, NULL as pgspout.null;
 * nil when n < 0. */
void pgspout_lua_push_texts(lua_State *L, const char *const *v, int n);

/* core.json(v): v as JSON text (pgspout.json). Tables with keys 1..#t
 * (or 1..t.n) are arrays, other tables objects with their keys sorted; {}
 * is an empty object, {n = 0} an empty array; nil and pgspout.null are
 * null. Raises on NaN/infinite numbers, functions, userdata, non-string
 * non-number keys and tables nested 100 deep. */
int pgspout_lua_json(lua_State *L);

/* The Lua table at idx (or nil) as options owned by a box pushed on the
 * stack. Values: strings, numbers, booleans (raises on other types,
 * non-string keys, or a NUL byte in a key or a string value). Returns
 * PGSPOUT_OK with *out (NULL for nil) or the pgspout_options_set code with
 * *err naming the key and the value (text owned by the box). */
int pgspout_lua_options(lua_State *L, int idx, pgspout_options **out, const char **err);

/* Push nil, message, code name (Lua's convention for failures the library
 * reports) and return 3. msg NULL or "": pgspout_strerror(code); a
 * sqlstate not already in msg is appended as " (SQLSTATE xxxxx)". */
int pgspout_lua_fail(lua_State *L, int code, const char *msg, const char *sqlstate);
/* The same for a failed call on stream s: its error and SQLSTATE, or
 * "stream is <state>" for a state error of a stream that did not fail. */
int pgspout_lua_stream_fail(lua_State *L, pgspout_stream *s, int code);

/* Make the blocking calls that follow on this thread interruptible by the
 * standalone interpreter's Ctrl-C (see convert.c); NULL removes that. */
void pgspout_lua_interruptible(lua_State *L);

/* core.log_drain() -> records, dropped | nothing: the log records of this
 * thread since the last drain (tables with level "debug"/"info"/"warning"/
 * "error", levelno, message, and label, severity, sqlstate when known) and
 * how many were dropped past the 32 kept. */
int pgspout_lua_log_drain(lua_State *L);

/* Called from %init: registers the box metatable and the log record hook
 * (process-wide: a process loads one binding). */
void pgspout_lua_init(lua_State *L);

#endif
