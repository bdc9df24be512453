/* lua.i - the Lua part of the SWIG interface (included by pgspout.i under
 * SWIGLUA).
 *
 * SWIG builds the module `pgspout_core` (luaopen_pgspout_core; generate with
 * -nomoduleglobal so require returns the table and sets no global). The
 * idiomatic API is bindings/lua/pgspout.lua on top of it.
 *
 * What comes from where:
 *  - Plain functions of pgspout.h are wrapped by SWIG with the typemaps below
 *    (version, strerror, code and state names, metrics, the registry), with
 *    the "pgspout_" prefix stripped: core.metrics_prometheus(), ...
 *  - Connections and streams are userdata with __gc, written by hand in
 *    bindings/lua/pgspout_lua.c and registered here with %native: SWIG's
 *    generic pointer wrappers cannot keep a parent alive or close a child
 *    before its parent. The per-chunk row conversion is there too (one call
 *    per chunk, rows built with lua_createtable/lua_rawseti).
 *
 * Lua errors are longjmps, so no typemap keeps a C resource in a local
 * across a call that may raise: strings the library hands over go into a
 * GC-owned box created before the call (pgspout_lua_box), options into a
 * GC-owned userdata, parameter arrays into Lua memory. The boxes are created
 * in "check" typemaps, after SWIG has counted the arguments.
 */

%{
#include "pgspout_lua.h"

/* Lua loads pgspout_core.so through luaopen_pgspout_core; SWIG_init is
 * luaopen_pgspout, the name %module gives. */
SWIGEXPORT int SWIG_init(lua_State *L);
SWIGEXPORT int luaopen_pgspout_core(lua_State *L);
SWIGEXPORT int luaopen_pgspout_core(lua_State *L) { return SWIG_init(L); }
%}

%init %{
  pgspout_lua_init(L);
  /* SWIG adds two helpers to the global table; keep globals clean (OpenResty
   * warns about global writes). */
  lua_pushnil(L);
  lua_setglobal(L, "swig_type");
  lua_pushnil(L);
  lua_setglobal(L, "swig_equals");
%}

/* ------------------------------------------------------------- natives */
%native(connect) int pgspout_lua_connect(lua_State *L);
%native(conn_close) int pgspout_lua_conn_close(lua_State *L);
%native(conn_ok) int pgspout_lua_conn_ok(lua_State *L);
%native(conn_error) int pgspout_lua_conn_error(lua_State *L);
%native(conn_server_version) int pgspout_lua_conn_server_version(lua_State *L);
%native(stream_open) int pgspout_lua_stream_open(lua_State *L);
%native(stream_chunk) int pgspout_lua_stream_chunk(lua_State *L);
%native(stream_pause) int pgspout_lua_stream_pause(lua_State *L);
%native(stream_resume) int pgspout_lua_stream_resume(lua_State *L);
%native(stream_cancel) int pgspout_lua_stream_cancel(lua_State *L);
%native(stream_state) int pgspout_lua_stream_state(lua_State *L);
%native(stream_stats) int pgspout_lua_stream_stats(lua_State *L);
%native(stream_close) int pgspout_lua_stream_close(lua_State *L);
%native(stream_columns) int pgspout_lua_stream_columns(lua_State *L);
%native(stream_error) int pgspout_lua_stream_error(lua_State *L);
%native(stream_command_tag) int pgspout_lua_stream_command_tag(lua_State *L);

/* ------------------------------------------------------------ typemaps */

/* Numbers may come as numeric strings (Lua's coercion, as lua_isnumber
 * allows). PUC Lua 5.1 converts those with strtod on the C string, so
 * "1\0junk" would read as 1 and act on another stream than the one written:
 * a numeric string with a NUL byte raises "pgspout: einval: <name> contains
 * a NUL byte" (pgspout_lua_cstring) before the type check, under LuaJIT too
 * (which would call it a wrong type). */
%define PGSPOUT_LUA_NUMBER_CHECK
  if (lua_type(L, $input) == LUA_TSTRING)
    pgspout_lua_cstring(L, $input, "%s", "$1_name");
  if (!lua_isnumber(L, $input))
    SWIG_fail_arg("$symname", $argnum, "$1_type");
%enddef

/* Registry ids: Lua numbers holding positive integers (ids count up from 1
 * and stay far below 2^53). */
%typemap(in) uint64_t id {
  PGSPOUT_LUA_NUMBER_CHECK
  lua_Number v_ = lua_tonumber(L, $input);
  if (!(v_ >= 0 && v_ < 9007199254740992.0) || v_ != (lua_Number)(uint64_t)v_) {
    SWIG_Lua_pushferrstring(L, "Error in %s (arg %d), expected a registry id (positive integer)", "$symname", $argnum);
    SWIG_fail;
  }
  $1 = (uint64_t)v_;
}
%typemap(in) int max_rows {
  PGSPOUT_LUA_NUMBER_CHECK
  $1 = ($1_ltype)lua_tonumber(L, $input);
}
%typemap(in, numinputs=0) uint64_t *id (uint64_t tmp = 0) { $1 = &tmp; }
%typemap(argout) uint64_t *id { lua_pushnumber(L, (lua_Number)*$1); SWIG_arg++; }

/* char **errmsg: boxed, pushed as a string or nil */
%typemap(in, numinputs=0) char **errmsg { $1 = NULL; }
%typemap(check) char **errmsg { $1 = (char **)pgspout_lua_box(L); }
%typemap(argout) char **errmsg { pgspout_lua_push_boxed(L, (void **)$1, (size_t)-1); SWIG_arg++; }

/* registry_fetch's (char **out, size_t *len): one Lua string or nil */
%typemap(in, numinputs=0) (char **out, size_t *len) (size_t tmplen = 0) { $1 = NULL; $2 = &tmplen; }
%typemap(check) (char **out, size_t *len) { $1 = (char **)pgspout_lua_box(L); }
%typemap(argout) (char **out, size_t *len) { pgspout_lua_push_boxed(L, (void **)$1, *$2); SWIG_arg++; }

%typemap(in, numinputs=0) int *nrows (int tmp = 0) { $1 = &tmp; }
%typemap(argout) int *nrows { lua_pushnumber(L, (lua_Number)*$1); SWIG_arg++; }

/* Every string argument SWIG wraps itself (registry_open's conninfo and
 * sql): a string or number (nil passes NULL, as SWIG's default does), and
 * a string with a NUL byte raises "pgspout: einval: <name> contains a NUL
 * byte" instead of being cut short (pgspout_lua_cstring, shared with the
 * natives). conninfo is called dsn in the Lua API. */
%typemap(in, checkfn="SWIG_lua_isnilstring") const char * {
  $1 = ($1_ltype)pgspout_lua_cstring(L, $input, "%s", "$1_name");
}
%typemap(in, checkfn="SWIG_lua_isnilstring") const char *conninfo {
  $1 = ($1_ltype)pgspout_lua_cstring(L, $input, "dsn");
}

/* (nparams, params) from a Lua array (or nil), see pgspout_lua_params */
%typemap(in) (int nparams, const char *const *params) {
  $2 = ($2_ltype)pgspout_lua_params(L, $input, &$1);
}
%typemap(default) (int nparams, const char *const *params) { $1 = 0; $2 = NULL; }

/* const pgspout_options *opts from a Lua table (or nil). A bad key or value
 * returns nil, message, code name without calling the function. */
%typemap(in) const pgspout_options *opts {
  {
    pgspout_options *o_ = NULL;
    const char *e_ = NULL;
    int rc_ = pgspout_lua_options(L, $input, &o_, &e_);
    if (rc_ < 0) {
      lua_pushnil(L);
      lua_pushstring(L, e_ ? e_ : pgspout_strerror(rc_));
      lua_pushstring(L, pgspout_code_name(rc_));
      return 3;
    }
    $1 = o_;
  }
}
%typemap(default) const pgspout_options *opts { $1 = NULL; }

/* Strings the library allocates (metrics, registry JSON): boxed before the
 * call, pushed (nil for NULL), freed at once. */
%define PGSPOUT_OWNED_STRING(fn)
%exception fn %{
  {
    void **box_ = pgspout_lua_box(L);
    $action
    *box_ = result;
    pgspout_lua_push_boxed(L, box_, (size_t)-1);
    return SWIG_arg + 1;
  }
%}
%enddef
PGSPOUT_OWNED_STRING(pgspout_metrics_prometheus)
PGSPOUT_OWNED_STRING(pgspout_metrics_json)
PGSPOUT_OWNED_STRING(pgspout_registry_stats_json)
PGSPOUT_OWNED_STRING(pgspout_registry_list_json)

/* ----------------------------------------------- what SWIG wraps itself */

/* Handles are the natives' business; hooks and raw memory have no Lua
 * meaning. */
%ignore pgspout_free;
%ignore pgspout_set_log_hook;
%ignore pgspout_log_fn;
%ignore pgspout_filter_fn;
%ignore pgspout_progress_fn;
%ignore pgspout_options_new;
%ignore pgspout_options_set;
%ignore pgspout_options_get;
%ignore pgspout_options_error;
%ignore pgspout_options_free;
%ignore pgspout_options_set_filter;
%ignore pgspout_options_set_progress;
%ignore pgspout_connect;
%ignore pgspout_connect_opts;
%ignore pgspout_conn_close;
%ignore pgspout_conn_error;
%ignore pgspout_conn_ok;
%ignore pgspout_conn_cancel;
%ignore pgspout_conn_server_version;
%ignore pgspout_stream_open;
%ignore pgspout_stream_next;
%ignore pgspout_stream_next_chunk;
%ignore pgspout_chunk_nrows;
%ignore pgspout_chunk_row;
%ignore pgspout_stream_socket;
%ignore pgspout_stream_wait_ms;
%ignore pgspout_stream_ncols;
%ignore pgspout_stream_colname;
%ignore pgspout_stream_coltype;
%ignore pgspout_row_ncols;
%ignore pgspout_row_value;
%ignore pgspout_row_isnull;
%ignore pgspout_row_json;
%ignore pgspout_chunk_ndjson;
%ignore pgspout_stream_pause;
%ignore pgspout_stream_resume;
%ignore pgspout_stream_cancel;
%ignore pgspout_stream_state;
%ignore pgspout_stream_close;
%ignore pgspout_stream_error;
%ignore pgspout_stream_sqlstate;
%ignore pgspout_stream_errcode;
%ignore pgspout_stream_stats;
%ignore pgspout_stream_stats_json;
%ignore pgspout_stats;

/* core.version(), core.registry_open(), ... ; constants keep their names
 * (core.PGSPOUT_OK, core.PGSPOUT_STATE_RUNNING, ...) */
%rename("%(strip:[pgspout_])s") "";

%include "pgspout.h"
