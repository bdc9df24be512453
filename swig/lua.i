/* lua.i - the Lua part of the SWIG interface (included by pgspout.i under
 * SWIGLUA, before pgspout.h): typemaps and the connection and stream types.
 *
 * SWIG builds the module `pgspout_core` (luaopen_pgspout_core; generated
 * with -nomoduleglobal so require returns the table and sets no global);
 * bindings/lua/pgspout.lua is the idiomatic layer on top of it.
 *
 *  - Functions of pgspout.h become module functions with "pgspout_"
 *    stripped (core.connect, core.version, core.registry_open, ...).
 *  - pgspout_conn and pgspout_stream become Lua types whose methods are
 *    the functions of pgspout.h on them (%extend below: mostly declarations
 *    that SWIG maps onto pgspout_stream_<method>). Objects are closed by
 *    their __gc: a stream with pgspout_stream_close, a connection with
 *    pgspout_conn_release (it closes once its stream has ended, so the GC
 *    may collect the two in any order). close() closes at once and empties
 *    the object; any other method of a closed object returns nil, "<stream
 *    or connection> is closed", "estate".
 *  - Failures the library reports follow Lua's convention: nil, message,
 *    code name (the message ends in "(SQLSTATE xxxxx)" when there is one).
 *    Wrong argument types raise.
 *  - Hand-written C (bindings/lua/convert.c) does what one call per chunk
 *    must: rows, stats, parameter and option tables. Strings the library
 *    allocates are freed by pgspout.i's newfree typemap.
 *
 * Lua errors are longjmps: no typemap keeps a C resource in a local across
 * a call that may raise. New handles are written straight into their
 * GC-owned object, options and strings the library hands over go into a
 * GC-owned box (pgspout_lua_box), parameter arrays live in Lua memory.
 */

%{
#include <stdbool.h>

#include "pgspout_lua.h"

/* Lua loads pgspout_core.so through luaopen_pgspout_core; SWIG_init is
 * luaopen_pgspout, the name %module gives. */
SWIGEXPORT int SWIG_init(lua_State *L);
SWIGEXPORT int luaopen_pgspout_core(lua_State *L);
SWIGEXPORT int luaopen_pgspout_core(lua_State *L) { return SWIG_init(L); }

typedef int pgspout_lua_rc;  /* a code: true | nil, message, code name */
typedef int pgspout_lua_get; /* the out-values | nil, message, code name */
typedef int pgspout_lua_new; /* a new object | nil, message, code name */
typedef const char *const *pgspout_lua_texts; /* a table of text values */

/* The handle of the pgspout object of type ty at idx (NULL once closed);
 * raises for anything else, foreign userdata included. */
static void *pgspout_lua_self(lua_State *L, int idx, swig_type_info *ty)
{
    swig_lua_userdata *u = (swig_lua_userdata *)lua_touserdata(L, idx);
    if (lua_type(L, idx) != LUA_TUSERDATA || lua_objlen(L, idx) != sizeof *u || u->type != ty)
        luaL_error(L, "bad self (pgspout %s expected, got %s)",
                   ((swig_lua_class *)ty->clientdata)->name, luaL_typename(L, idx));
    return u->ptr;
}

/* Push a new object of type ty, owned (its __gc closes it), whose handle
 * the call about to run writes through the pointer returned. */
static void **pgspout_lua_newobj(lua_State *L, swig_type_info *ty)
{
    swig_lua_userdata *u = (swig_lua_userdata *)lua_newuserdata(L, sizeof *u);
    u->type = ty;
    u->own = 1;
    u->ptr = NULL;
    SWIG_Lua_AddMetatable(L, ty);
    return &u->ptr;
}

/* nil, message, code for a failed method of the object at index 1 */
static int pgspout_lua_fail_self(lua_State *L, int code)
{
    swig_lua_userdata *u = (swig_lua_userdata *)lua_touserdata(L, 1);
    if (u->type == SWIGTYPE_p_pgspout_stream)
        return pgspout_lua_stream_fail(L, (pgspout_stream *)u->ptr, code);
    if (u->type == SWIGTYPE_p_pgspout_conn)
        return pgspout_lua_fail(L, code, pgspout_conn_error((pgspout_conn *)u->ptr), NULL);
    return pgspout_lua_fail(L, code, NULL, NULL); /* a plan: the code's own text */
}
%}

%init %{
  pgspout_lua_init(L);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  /* The class metatables, as core.conn_class / core.stream_class /
   * core.snapshot_class / core.plan_class, for
   * pgspout.lua to add its methods (objects compare by identity, not by
   * SWIG's pointer comparison: closed objects all hold NULL). */
  {
    swig_type_info *ty[4] = {SWIGTYPE_p_pgspout_conn, SWIGTYPE_p_pgspout_stream,
                             SWIGTYPE_p_pgspout_snapshot, SWIGTYPE_p_pgspout_plan};
    const char *field[4] = {"conn_class", "stream_class", "snapshot_class", "plan_class"};
    for (int i = 0; i < 4; i++) {
      SWIG_Lua_get_class_metatable(L, ((swig_lua_class *)ty[i]->clientdata)->fqname);
      lua_pushnil(L);
      lua_setfield(L, -2, "__eq");
      lua_setfield(L, -2, field[i]);
    }
  }
  /* SWIG adds two helpers to the global table; keep globals clean
   * (OpenResty warns about global writes). */
  lua_pushnil(L);
  lua_setglobal(L, "swig_type");
  lua_pushnil(L);
  lua_setglobal(L, "swig_equals");
%}

/* ------------------------------------------------------------- typemaps */
/* (before the types they apply to: %extend methods take the typemaps in
 * force where their struct is declared) */

typedef int pgspout_lua_rc;
typedef int pgspout_lua_get;
typedef int pgspout_lua_new;

%typemap(out) pgspout_lua_rc {
  if (result < 0)
    return pgspout_lua_fail_self(L, result);
  lua_pushboolean(L, 1);
  SWIG_arg++;
}
%typemap(out) pgspout_lua_get {
  if (result < 0)
    return pgspout_lua_fail_self(L, result);
}
%typemap(out) pgspout_lua_new "";
%typemap(out) int pgspout_connect_opts "";

/* self: an open object, or the closed-object failure */
%define PGSPOUT_LUA_SELF(TYPE, WHAT)
%typemap(in) struct TYPE *self {
  $1 = (TYPE *)pgspout_lua_self(L, $input, $1_descriptor);
  if (!$1)
    return pgspout_lua_fail(L, PGSPOUT_ESTATE, WHAT " is closed", NULL);
}
%enddef
PGSPOUT_LUA_SELF(pgspout_conn, "connection")
PGSPOUT_LUA_SELF(pgspout_stream, "stream")

/* New handles: written into an owned object made before the call. On
 * failure, the message of the failed handle (or of the connection), which
 * is then closed. */
%typemap(in, numinputs=0) pgspout_conn **out (int obj = 0), pgspout_stream **out (int obj = 0) "$1 = NULL;";
%typemap(check) pgspout_conn **out, pgspout_stream **out {
  $1 = ($1_ltype)pgspout_lua_newobj(L, $*1_descriptor);
  obj$argnum = lua_gettop(L);
}
%typemap(argout) pgspout_conn **out {
  if (result < 0) {
    pgspout_lua_fail(L, result, *$1 ? pgspout_conn_error(*$1) : NULL, NULL);
    pgspout_conn_close(*$1);
    *$1 = NULL;
    return 3;
  }
  lua_pushvalue(L, obj$argnum);
  SWIG_arg++;
}
%typemap(argout) pgspout_stream **out {
  if (result < 0) {
    if (*$1)
      pgspout_lua_stream_fail(L, *$1, result);
    else
      pgspout_lua_fail(L, result, pgspout_conn_error(arg1), NULL);
    pgspout_stream_close(*$1);
    *$1 = NULL;
    return 3;
  }
  lua_pushvalue(L, obj$argnum);
  SWIG_arg++;
}

/* Numbers may come as numeric strings (Lua's coercion, as lua_isnumber
 * allows). PUC Lua 5.1 converts those with strtod on the C string, so
 * "1\0junk" would read as 1 and act on another stream than the one written:
 * a numeric string with a NUL byte raises "pgspout: einval: <name> contains
 * a NUL byte" (pgspout_lua_cstring) before the type check. */
%define PGSPOUT_LUA_NUMBER_CHECK
  if (lua_type(L, $input) == LUA_TSTRING)
    pgspout_lua_cstring(L, $input, "%s", "$1_name");
  if (!lua_isnumber(L, $input))
    SWIG_fail_arg("$symname", $argnum, "$1_type");
%enddef
%typemap(in) int {
  PGSPOUT_LUA_NUMBER_CHECK
  $1 = ($1_ltype)lua_tonumber(L, $input);
}
%typemap(in) int mode {
  PGSPOUT_LUA_NUMBER_CHECK
  $1 = (int)lua_tonumber(L, $input);
  if ($1 < PGSPOUT_LUA_ARRAY || $1 > PGSPOUT_LUA_JSON)
    luaL_argerror(L, $input, "mode must be 0 (array), 1 (map) or 2 (json)");
}
/* Registry ids: Lua numbers holding positive integers (ids count up from 1
 * and stay far below 2^53). */
%typemap(in) uint64_t id {
  PGSPOUT_LUA_NUMBER_CHECK
  lua_Number v_ = lua_tonumber(L, $input);
  if (!(v_ >= 0 && v_ < 9007199254740992.0) || v_ != (lua_Number)(uint64_t)v_)
    luaL_argerror(L, $input, "expected a registry id (positive integer)");
  $1 = (uint64_t)v_;
}

/* Every string argument: a string or number (nil passes NULL; sql must be
 * there), and a string with a NUL byte raises "pgspout: einval: <name>
 * contains a NUL byte" instead of being cut short. conninfo is called dsn
 * in the Lua API, and nil means "" (PG* environment variables). */
%typemap(in, checkfn="SWIG_lua_isnilstring") const char * {
  $1 = ($1_ltype)pgspout_lua_cstring(L, $input, "%s", "$1_name");
}
%typemap(in, checkfn="lua_isstring") const char *sql {
  $1 = ($1_ltype)pgspout_lua_cstring(L, $input, "sql");
}
%typemap(in, checkfn="SWIG_lua_isnilstring") const char *conninfo {
  $1 = lua_isnil(L, $input) ? "" : ($1_ltype)pgspout_lua_cstring(L, $input, "dsn");
}
%typemap(default) const char *conninfo { $1 = ""; }

/* (nparams, params) from a Lua array (or nil), see pgspout_lua_params.
 * The values it pushes must not pose as the options argument that follows
 * when the caller left it out (registry_open(dsn, sql, params) read its
 * parameter array as argument #4): that argument is made nil first. */
%typemap(in) (int nparams, const char *const *params) {
  if (lua_gettop(L) < $input + 1)
    lua_settop(L, $input + 1);
  $2 = ($2_ltype)pgspout_lua_params(L, $input, &$1);
}
%typemap(default) (int nparams, const char *const *params) { $1 = 0; $2 = NULL; }

/* Options from a Lua table (or nil). A bad key or value returns nil,
 * message, code name without calling the function. */
%typemap(in) const pgspout_options *opts {
  {
    pgspout_options *o_ = NULL;
    const char *e_ = NULL;
    int rc_ = pgspout_lua_options(L, $input, &o_, &e_);
    if (rc_ < 0)
      return pgspout_lua_fail(L, rc_, e_, NULL);
    $1 = o_;
  }
}
%typemap(default) const pgspout_options *opts { $1 = NULL; }

/* The rows of the next chunk (pgspout_lua_push_rows), false at the end */
%typemap(in, numinputs=0) const pgspout_chunk **chunk (const pgspout_chunk *tmp = NULL) "$1 = ($1_ltype)&tmp;";
%typemap(argout) const pgspout_chunk **chunk {
  if (result == PGSPOUT_OK)
    pgspout_lua_push_rows(L, arg1, *$1, arg2, arg3);
  else
    lua_pushboolean(L, 0);
  SWIG_arg++;
}

/* Stats as a table (pgspout_lua_push_stats) */
%typemap(in, numinputs=0) pgspout_stats *st (pgspout_stats tmp) "tmp.size = sizeof tmp; $1 = &tmp;";
%typemap(argout) pgspout_stats *st "pgspout_lua_push_stats(L, $1); SWIG_arg++;";

/* Out-values of the registry; char ** is a string the library allocates:
 * boxed before the call, pushed (nil for NULL), freed at once. */
%typemap(in, numinputs=0) uint64_t *id (uint64_t tmp = 0) "$1 = &tmp;";
%typemap(argout) uint64_t *id "lua_pushnumber(L, (lua_Number)*$1); SWIG_arg++;";
%typemap(in, numinputs=0) int *nrows (int tmp = 0) "$1 = &tmp;";
%typemap(argout) int *nrows "lua_pushnumber(L, (lua_Number)*$1); SWIG_arg++;";
%typemap(in, numinputs=0) (char **out, size_t *len) (size_t tmplen = 0) "$1 = NULL; $2 = &tmplen;";
%typemap(check) (char **out, size_t *len) "$1 = (char **)pgspout_lua_box(L, NULL);";
%typemap(argout) (char **out, size_t *len) "pgspout_lua_push_boxed(L, (void **)$1, *$2); SWIG_arg++;";
%typemap(in, numinputs=0) char **errmsg "$1 = NULL;";
%typemap(check) char **errmsg "$1 = (char **)pgspout_lua_box(L, NULL);";
%typemap(argout) char **errmsg {
  if (result < 0) /* after the other out-values: these three are returned */
    return pgspout_lua_fail(L, result, *$1, NULL);
}
/* registry calls returning a code: true | nil, message, code name */
%define PGSPOUT_LUA_RC(fn)
%typemap(out) int fn {
  if (result < 0)
    return pgspout_lua_fail(L, result, NULL, NULL);
  lua_pushboolean(L, 1);
  SWIG_arg++;
}
%enddef
PGSPOUT_LUA_RC(pgspout_registry_pause)
PGSPOUT_LUA_RC(pgspout_registry_resume)
PGSPOUT_LUA_RC(pgspout_registry_cancel)
PGSPOUT_LUA_RC(pgspout_registry_close)
%typemap(out) int pgspout_registry_open "";
%typemap(out) int pgspout_registry_fetch "";

/* ------------------------------------------------------------------ pools
 * Lua gets the registry's process-wide pools (pgspout_registry_pool: one
 * per DSN and connection/pool keys, shared by every Lua VM of the process,
 * never closed), not pools of its own: a pool object is a borrowed handle
 * (no __gc), so no VM can close a pool another one uses. Connections
 * acquired from it are ordinary connection objects whose close() and
 * __gc give them back (pgspout_conn_close on a pooled connection). */
%ignore pgspout_pool_new;
%ignore pgspout_pool_close;
%ignore pgspout_pool_release;
%ignore pgspout_pool_maintain;
/* The never-blocking probe serves event loops that open connections off
 * the loop (pgspout.aio's pool); a Lua pool's acquire already runs where it
 * may block (a worker thread in OpenResty). */
%ignore pgspout_pool_acquire_idle;
%ignore pgspout_pool_stats;
%typemap(in, numinputs=0) pgspout_pool **out (pgspout_pool *tmp = NULL) "$1 = &tmp;";
%typemap(argout) pgspout_pool **out {
  if (result < 0)
    return pgspout_lua_fail(L, result, NULL, NULL);
  SWIG_NewPointerObj(L, *$1, $*1_descriptor, 0);
  SWIG_arg++;
}
%typemap(out) int pgspout_registry_pool "";
%typemap(out) int pgspout_pool_acquire "";
%typemap(out) int pgspout_registry_open_pool "";
%typemap(in) pgspout_pool *pool {
  if (!SWIG_isptrtype(L, $input) ||
      !SWIG_IsOK(SWIG_ConvertPtr(L, $input, (void **)&$1, $descriptor, 0)) || !$1)
    luaL_argerror(L, $input, "pgspout pool expected");
}
/* acquire's wait in milliseconds: -1 = the pool's acquire_timeout */
%typemap(in) int64_t timeout_ms {
  PGSPOUT_LUA_NUMBER_CHECK
  $1 = (int64_t)lua_tonumber(L, $input);
}
%typemap(in, numinputs=0) pgspout_pool_stats *st (pgspout_pool_stats tmp) "tmp.size = sizeof tmp; $1 = &tmp;";
%typemap(out) int pgspout_pool_stats_get "";
%typemap(argout) pgspout_pool_stats *st {
  if (result < 0)
    return pgspout_lua_fail(L, result, NULL, NULL);
  pgspout_lua_push_pool_stats(L, $1);
  SWIG_arg++;
}
%nodefaultctor pgspout_pool;
%nodefaultdtor pgspout_pool;
struct pgspout_pool {};

/* Blocking calls: interruptible by the standalone interpreter's Ctrl-C */
%define PGSPOUT_LUA_BLOCKING(fn)
%exception fn %{
  pgspout_lua_interruptible(L);
  $action
  pgspout_lua_interruptible(NULL);
%}
%enddef
PGSPOUT_LUA_BLOCKING(pgspout_connect_opts)
PGSPOUT_LUA_BLOCKING(pgspout_pool_acquire)
PGSPOUT_LUA_BLOCKING(pgspout_conn::open)
PGSPOUT_LUA_BLOCKING(pgspout_stream::chunk)

/* close() empties the object: its __gc and other methods see it closed */
%exception pgspout_conn::close %{
  $action
  ((swig_lua_userdata *)lua_touserdata(L, 1))->ptr = NULL;
%}
/* release() too: the stream running on it closes it (or gives it back to
 * its pool) as it ends */
%exception pgspout_conn::release %{
  $action
  ((swig_lua_userdata *)lua_touserdata(L, 1))->ptr = NULL;
%}
%exception pgspout_stream::close %{
  $action
  ((swig_lua_userdata *)lua_touserdata(L, 1))->ptr = NULL;
%}

/* -------------------------------------------------- what the module has */

/* core.json(v) -> JSON text (pgspout.json in pgspout.lua; convert.c) */
%native(json) int pgspout_lua_json(lua_State *L);
/* core.log_drain() -> records, dropped (pgspout.lua dispatches them) */
%native(log_drain) int pgspout_lua_log_drain(lua_State *L);

%rename(connect) pgspout_connect_opts;
%rename("%(strip:[pgspout_])s") "";
/* Handles are the types below; hooks, raw memory and row accessors have no
 * Lua meaning (convert.c uses them). */
%rename("$ignore", regexmatch$name="^pgspout_(conn|stream|chunk|row|options)_") "";
%rename("$ignore", regexmatch$name="^pgspout_(connect|free|set_.*_hook|stats.*|.*_fn)$") "";
/* Snapshots and plans: the types below; their constructors stay module
 * functions (snapshot_export, plan_make, plan_from_json). */
%rename("$ignore", regexmatch$name="^pgspout_(snapshot|plan)_(?!export$|make$|from_json$)") "";
%ignore pgspout_plan_spec;

/* ---------------------------------------------------------------- types */

%nodefaultctor pgspout_conn;
%nodefaultctor pgspout_stream;
struct pgspout_conn {};
struct pgspout_stream {};

/* Methods without a body are pgspout_conn_<name> / pgspout_stream_<name>. */
%extend pgspout_conn {
  ~pgspout_conn() { pgspout_conn_release($self); }
  void close();
  void release();
  bool ok();
  const char *error();
  pgspout_lua_rc cancel();
  int server_version();
  /* conn:open(sql [, params [, opts]]) -> stream | nil, message, code */
  pgspout_lua_new open(const char *sql, int nparams, const char *const *params,
                       const pgspout_options *opts, pgspout_stream **out) {
    return pgspout_stream_open($self, sql, nparams, params, opts, out);
  }
}

%extend pgspout_stream {
  ~pgspout_stream() { pgspout_stream_close($self); }
  void close();
  pgspout_lua_rc pause();
  pgspout_lua_rc resume();
  pgspout_lua_rc cancel();
  int state();
  pgspout_lua_get stats(pgspout_stats *st);
  const char *error();
  const char *sqlstate();
  int errcode();
  const char *command_tag();
  int ncols();
  const char *colname(int col);
  unsigned int coltype(int col);
  int binary();
  /* s:chunk(mode, values) -> rows | false (end) | nil, message, code: the
   * buffered rows not yet handed out (values > 0: about that many values'
   * worth). They count as delivered only as s:handout(n) hands them on,
   * which fails once the stream was cancelled or its connection closed. */
  pgspout_lua_get chunk(int mode, int values, const pgspout_chunk **chunk) {
    return pgspout_stream_next_chunk($self, PGSPOUT_HANDOUT, chunk);
  }
  pgspout_lua_rc handout(int n);
}

/* ------------------------------------------------ snapshots and plans
 * Partitioned reads (pgspout.partitions in pgspout.lua): a snapshot holder
 * and partition plans are objects like connections, closed or freed by
 * their __gc. A plan's partitions are read as ordinary streams opened with
 * the option snapshot (conn:stream), as in Python.
 *   core.snapshot_export(dsn [, opts]) -> snapshot | nil, message, code
 *   core.plan_make(conn, spec) -> plan | nil, message, code (spec: a table
 *       of pgspout_plan_spec's fields, pgspout_lua_plan_spec)
 *   core.plan_from_json(text) -> plan | nil, message, "evalue"
 */
PGSPOUT_LUA_SELF(pgspout_snapshot, "snapshot")
PGSPOUT_LUA_SELF(pgspout_plan, "plan")

%typemap(in, numinputs=0) pgspout_snapshot **out (int obj = 0), pgspout_plan **out (int obj = 0) "$1 = NULL;";
%typemap(check) pgspout_snapshot **out, pgspout_plan **out {
  $1 = ($1_ltype)pgspout_lua_newobj(L, $*1_descriptor);
  obj$argnum = lua_gettop(L);
}
%typemap(argout) pgspout_snapshot **out {
  if (result < 0) {
    pgspout_lua_fail(L, result, *$1 ? pgspout_snapshot_error(*$1) : NULL, NULL);
    pgspout_snapshot_close(*$1);
    *$1 = NULL;
    return 3;
  }
  lua_pushvalue(L, obj$argnum);
  SWIG_arg++;
}
/* (plan_from_json's failure is returned by the char **errmsg typemap,
 * plan_make's by its out typemap: here only the success) */
%typemap(argout) pgspout_plan **out {
  if (result >= 0) {
    lua_pushvalue(L, obj$argnum);
    SWIG_arg++;
  }
}
%typemap(out) int pgspout_snapshot_export "";
%typemap(out) int pgspout_plan_from_json "";
%typemap(out) int pgspout_plan_make {
  if (result < 0)
    return pgspout_lua_fail(L, result, pgspout_conn_error(arg1), NULL);
}

/* plan_make's connection: an open pgspout connection (not self) */
%typemap(in) pgspout_conn *conn {
  {
    swig_lua_userdata *u_ = (swig_lua_userdata *)lua_touserdata(L, $input);
    if (lua_type(L, $input) != LUA_TUSERDATA || lua_objlen(L, $input) != sizeof *u_ ||
        u_->type != $1_descriptor)
      luaL_argerror(L, $input, "pgspout connection expected");
    $1 = ($1_ltype)u_->ptr;
    if (!$1)
      return pgspout_lua_fail(L, PGSPOUT_ESTATE, "connection is closed", NULL);
  }
}
%typemap(in) const pgspout_plan_spec *spec (pgspout_plan_spec tmp) {
  pgspout_lua_plan_spec(L, $input, &tmp);
  $1 = &tmp;
}

PGSPOUT_LUA_BLOCKING(pgspout_snapshot_export)
PGSPOUT_LUA_BLOCKING(pgspout_plan_make)
%exception pgspout_snapshot::close %{
  $action
  ((swig_lua_userdata *)lua_touserdata(L, 1))->ptr = NULL;
%}

%extend pgspout_snapshot {
  ~pgspout_snapshot() { pgspout_snapshot_close($self); }
  /* close(): ends the holder's transaction (ROLLBACK) and its connection */
  void close();
  const char *id();
  const char *error();
  bool ok();
}

/* A partition's parameters: {v1, ..., n = n}, SQL NULL as pgspout.null */
typedef const char *const *pgspout_lua_texts;
%typemap(out) pgspout_lua_texts {
  pgspout_lua_push_texts(L, result, pgspout_plan_nparams(arg1, arg2));
  SWIG_arg++;
}
%newobject pgspout_plan::json;

/* (after the typemaps: %extend methods take those in force here) */
%nodefaultctor pgspout_snapshot;
%nodefaultctor pgspout_plan;
struct pgspout_snapshot {};
struct pgspout_plan {};

/* Methods: pgspout_plan_<name>; partitions are numbered from 0 here (the
 * C API's), from 1 in pgspout.lua. */
%extend pgspout_plan {
  ~pgspout_plan() { pgspout_plan_free($self); }
  int npartitions();
  const char *snapshot();
  const char *table();
  /* sql(i), params(i): nil when i is out of range */
  const char *sql(int i);
  pgspout_lua_texts params(int i);
  /* the plan as pgspout_plan_json writes it */
  char *json();
  pgspout_lua_rc set_snapshot(const char *id);
}
