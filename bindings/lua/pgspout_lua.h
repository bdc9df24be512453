/* pgspout_lua.h - the hand-written C half of the Lua module.
 *
 * The SWIG-generated wrapper (swig/lua.i) registers the native functions
 * below with %native and uses the helpers in its typemaps. Everything here
 * follows one rule for Lua errors (which are longjmps): a C resource that
 * must be freed is owned by a userdata with a __gc metamethod before any Lua
 * call that may raise, so nothing leaks whichever way a call ends. */
#ifndef PGSPOUT_LUA_H
#define PGSPOUT_LUA_H

#include <lua.h>
#include <lauxlib.h>
#include <stddef.h>

#include "pgspout.h"

/* A fresh GC-owned slot for a pointer the library hands over (freed with
 * pgspout_free by __gc unless taken back). Pushes the box on the stack. */
void **pgspout_lua_box(lua_State *L);
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

/* Convert the Lua value at idx (a table of parameters or nil) into a C
 * array of text values: strings as they are, numbers exactly (integers
 * without exponent), booleans "true"/"false", pgspout.null/nil holes as SQL
 * NULL. The length is t.n when present, else #t. The array and converted
 * strings are kept alive by values pushed on the stack. Raises on a value
 * of another type or a string with a NUL byte. Returns NULL when there are
 * no parameters. */
const char *const *pgspout_lua_params(lua_State *L, int idx, int *n);

/* Convert the Lua table at idx (or nil) into options owned by a GC'd box
 * pushed on the stack. Values: strings, numbers, booleans (raises on other
 * types, non-string keys, or a NUL byte in a key or a string value).
 * Returns PGSPOUT_OK with *out (NULL for nil) or the pgspout_options_set
 * code with *err describing the key and value (the text lives as long as
 * the box). */
int pgspout_lua_options(lua_State *L, int idx, pgspout_options **out, const char **err);

/* Native functions registered through %native in swig/lua.i. */
int pgspout_lua_init(lua_State *L); /* called from %init, module table on top */
int pgspout_lua_connect(lua_State *L);
int pgspout_lua_conn_close(lua_State *L);
int pgspout_lua_conn_ok(lua_State *L);
int pgspout_lua_conn_error(lua_State *L);
int pgspout_lua_conn_server_version(lua_State *L);
int pgspout_lua_stream_open(lua_State *L);
int pgspout_lua_stream_chunk(lua_State *L);
int pgspout_lua_stream_pause(lua_State *L);
int pgspout_lua_stream_resume(lua_State *L);
int pgspout_lua_stream_cancel(lua_State *L);
int pgspout_lua_stream_state(lua_State *L);
int pgspout_lua_stream_stats(lua_State *L);
int pgspout_lua_stream_close(lua_State *L);
int pgspout_lua_stream_columns(lua_State *L);
int pgspout_lua_stream_error(lua_State *L);
int pgspout_lua_stream_command_tag(lua_State *L);

#endif
