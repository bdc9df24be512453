/*
 * pgspout_lua.c - connections and streams as Lua userdata, and the per-chunk
 * row conversion (the hot path: one C call builds every row of a chunk).
 *
 * Ownership and garbage collection
 * --------------------------------
 * A connection userdata (lconn) owns a pgspout_conn; a stream userdata
 * (lstream) owns a pgspout_stream. The stream's environment table holds its
 * connection userdata (so the connection outlives every stream opened on it),
 * the column names and the per-column conversion kinds. Each connection
 * knows its one open stream (`active`) and each stream its connection;
 * whichever of the two is closed or finalized first unlinks the other, so
 * the finalizer order the GC chooses does not matter:
 *  - closing a stream closes the pgspout_stream (cancelling a running query
 *    and draining the connection) and unlinks it from the connection;
 *  - closing a connection closes its open stream first.
 * Explicit close and __gc run the same code, and everything tolerates being
 * called again. A half-read stream dropped by the GC is therefore closed,
 * and its server query cancelled, at the next collection.
 *
 * Lua errors are longjmps: every C resource is owned by a userdata with a
 * __gc before any Lua API call that may raise, so no path leaks.
 *
 * Value mapping (pgspout_lua_stream_chunk):
 *   int2, int4, oid, float4, float8  -> number (NaN/Infinity included)
 *   int8        -> number when |v| <= 2^53 (exact), else string (no precision
 *                  is ever lost silently)
 *   numeric     -> string (arbitrary precision; tonumber() it if you wish)
 *   bool        -> boolean
 *   NULL        -> pgspout.null (a NULL light userdata: equal to ngx.null and
 *                  cjson.null)
 *   json, jsonb -> the JSON text
 *   others      -> the PostgreSQL text form, as a string
 */
#include "pgspout_lua.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MT_BOX    "pgspout.box"
#define MT_OPTS   "pgspout.options"
#define MT_CONN   "pgspout.conn"
#define MT_STREAM "pgspout.stream"

#define MAX_PARAMS 65535

/* stream environment slots */
enum { ENV_CONN = 1, ENV_NAMES = 2, ENV_KINDS = 3 };

/* per-column conversion */
enum { K_STRING = 0, K_INT, K_INT8, K_FLOAT, K_BOOL };

typedef struct lstream lstream;

typedef struct lconn {
    pgspout_conn *conn; /* NULL once closed */
    lstream *active;    /* the stream open on it, if any */
} lconn;

struct lstream {
    pgspout_stream *s; /* NULL once closed */
    lconn *conn;       /* NULL once unlinked */
    int ncols;
    unsigned char *kinds; /* lives in the environment table */
    int have_final;
    pgspout_stats final;  /* snapshot taken at close */
    char command_tag[64]; /* ... and the command tag */
};

typedef struct lbox {
    void *p;
} lbox;

typedef struct lopts {
    pgspout_options *o;
} lopts;

/* ---------------------------------------------------------------- locale */

/* PostgreSQL always writes '.' as the decimal point; the host may have set
 * LC_NUMERIC to something else, so parse and print numbers in "C". */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void) { c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0); }

static locale_t get_c_locale(void)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale;
}

static double parse_double(const char *v, char **end)
{
    locale_t loc = get_c_locale();
    return loc ? strtod_l(v, end, loc) : strtod(v, end);
}

/* Exact text for a Lua number: integers without exponent, other values with
 * the fewest digits that read back the same, PostgreSQL's spelling for
 * non-finite values. */
static const char *number_text(lua_Number x, char *buf, size_t cap)
{
    locale_t loc, old = (locale_t)0;
    if (isnan(x))
        return "NaN";
    if (isinf(x))
        return x > 0 ? "Infinity" : "-Infinity";
    if (x == floor(x) && fabs(x) < 9.2e18) {
        snprintf(buf, cap, "%lld", (long long)x);
        return buf;
    }
    loc = get_c_locale();
    if (loc)
        old = uselocale(loc);
    snprintf(buf, cap, "%.15g", (double)x);
    if (parse_double(buf, NULL) != (double)x)
        snprintf(buf, cap, "%.17g", (double)x);
    if (loc)
        uselocale(old);
    return buf;
}

/* ------------------------------------------------------------------ boxes */

static int box_gc(lua_State *L)
{
    lbox *b = lua_touserdata(L, 1);
    if (b && b->p) {
        pgspout_free(b->p);
        b->p = NULL;
    }
    return 0;
}

void **pgspout_lua_box(lua_State *L)
{
    lbox *b = lua_newuserdata(L, sizeof *b);
    b->p = NULL;
    luaL_getmetatable(L, MT_BOX);
    lua_setmetatable(L, -2);
    return &b->p;
}

void pgspout_lua_push_boxed(lua_State *L, void **box, size_t len)
{
    if (!*box) {
        lua_pushnil(L);
        return;
    }
    if (len == (size_t)-1)
        lua_pushstring(L, *box);
    else
        lua_pushlstring(L, *box, len);
    pgspout_free(*box);
    *box = NULL;
}

static int opts_gc(lua_State *L)
{
    lopts *b = lua_touserdata(L, 1);
    if (b && b->o) {
        pgspout_options_free(b->o);
        b->o = NULL;
    }
    return 0;
}

/* ------------------------------------------------------ params, options */

const char *pgspout_lua_cstring(lua_State *L, int idx, const char *fmt, ...)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    va_list ap;

    if (!s || !memchr(s, '\0', len))
        return s;
    luaL_checkstack(L, 3, "pgspout: einval message");
    lua_pushfstring(L, "pgspout: %s: ", pgspout_code_name(PGSPOUT_EINVAL));
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushliteral(L, " contains a NUL byte");
    lua_concat(L, 3);
    lua_error(L);
    return NULL; /* not reached */
}

const char *const *pgspout_lua_params(lua_State *L, int idx, int *n)
{
    const char **arr;
    lua_Number nn;
    int count, i;
    char num[64];

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    *n = 0;
    if (lua_isnoneornil(L, idx))
        return NULL;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "n");
    if (lua_type(L, -1) == LUA_TNUMBER) {
        nn = lua_tonumber(L, -1);
        if (nn != floor(nn) || nn < 0 || nn > MAX_PARAMS)
            luaL_error(L, "bad parameter count n=%f", (double)nn);
        count = (int)nn;
    } else {
        count = (int)lua_objlen(L, idx);
    }
    lua_pop(L, 1);
    if (count > MAX_PARAMS)
        luaL_error(L, "too many parameters (%d, at most %d)", count, MAX_PARAMS);
    if (count == 0)
        return NULL;
    luaL_checkstack(L, count + 4, "too many parameters");
    arr = lua_newuserdata(L, (size_t)count * sizeof *arr);
    for (i = 0; i < count; i++) {
        lua_rawgeti(L, idx, i + 1);
        switch (lua_type(L, -1)) {
        case LUA_TNIL:
            arr[i] = NULL;
            lua_pop(L, 1);
            break;
        case LUA_TLIGHTUSERDATA:
            if (lua_touserdata(L, -1) != NULL)
                luaL_error(L, "bad parameter #%d (light userdata other than pgspout.null)", i + 1);
            arr[i] = NULL;
            lua_pop(L, 1);
            break;
        case LUA_TBOOLEAN:
            arr[i] = lua_toboolean(L, -1) ? "true" : "false";
            lua_pop(L, 1);
            break;
        case LUA_TNUMBER:
            lua_pushstring(L, number_text(lua_tonumber(L, -1), num, sizeof num));
            lua_replace(L, -2);
            arr[i] = lua_tostring(L, -1); /* kept alive on the stack */
            break;
        case LUA_TSTRING:
            arr[i] = pgspout_lua_cstring(L, -1, "parameter #%d", i + 1); /* kept on the stack */
            break;
        default:
            luaL_error(
                L, "bad parameter #%d (string, number, boolean or pgspout.null expected, got %s)",
                i + 1, luaL_typename(L, -1));
        }
    }
    *n = count;
    return arr;
}

int pgspout_lua_options(lua_State *L, int idx, pgspout_options **out, const char **err)
{
    lopts *b;
    char num[64];
    const char *key, *val;
    int rc;

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    *out = NULL;
    *err = NULL;
    if (lua_isnoneornil(L, idx))
        return PGSPOUT_OK;
    luaL_checktype(L, idx, LUA_TTABLE);
    b = lua_newuserdata(L, sizeof *b);
    b->o = NULL;
    luaL_getmetatable(L, MT_OPTS);
    lua_setmetatable(L, -2);
    b->o = pgspout_options_new();
    if (!b->o) {
        *err = pgspout_strerror(PGSPOUT_ENOMEM);
        return PGSPOUT_ENOMEM;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "bad option name (string expected, got %s)", luaL_typename(L, -2));
        key = pgspout_lua_cstring(L, -2, "option name");
        switch (lua_type(L, -1)) {
        case LUA_TSTRING: val = pgspout_lua_cstring(L, -1, "value of option '%s'", key); break;
        case LUA_TNUMBER: val = number_text(lua_tonumber(L, -1), num, sizeof num); break;
        case LUA_TBOOLEAN: val = lua_toboolean(L, -1) ? "on" : "off"; break;
        default:
            return luaL_error(
                L, "bad value for option '%s' (string, number or boolean expected, got %s)", key,
                luaL_typename(L, -1));
        }
        rc = pgspout_options_set(b->o, key, val);
        if (rc < 0) {
            lua_pop(L, 2);
            *err = pgspout_options_error(b->o);
            if (!*err || !**err)
                *err = pgspout_strerror(rc);
            return rc;
        }
        lua_pop(L, 1);
    }
    *out = b->o;
    return PGSPOUT_OK;
}

/* ----------------------------------------------------------------- errors */

/* Push an error message: text (libpq's trailing newline trimmed) plus
 * " (SQLSTATE xxxxx)" when there is one and the text does not carry it. */
static void push_message(lua_State *L, const char *msg, const char *sqlstate, int code)
{
    size_t n;
    if (!msg || !*msg)
        msg = pgspout_strerror(code);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    if (sqlstate && *sqlstate && !strstr(msg, sqlstate)) {
        lua_pushlstring(L, msg, n);
        lua_pushfstring(L, " (SQLSTATE %s)", sqlstate);
        lua_concat(L, 2);
    } else {
        lua_pushlstring(L, msg, n);
    }
}

/* nil, message, code name */
static int fail3(lua_State *L, const char *msg, const char *sqlstate, int code)
{
    lua_pushnil(L);
    push_message(L, msg, sqlstate, code);
    lua_pushstring(L, pgspout_code_name(code));
    return 3;
}

static int stream_fail(lua_State *L, lstream *ls, int code)
{
    return fail3(L, ls->s ? pgspout_stream_error(ls->s) : NULL,
                 ls->s ? pgspout_stream_sqlstate(ls->s) : NULL, code);
}

static int closed_fail(lua_State *L, const char *what)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s is closed", what);
    lua_pushstring(L, pgspout_code_name(PGSPOUT_ESTATE));
    return 3;
}

/* ------------------------------------------------------------- Ctrl-C */

/* The standalone lua and luajit interpreters answer SIGINT by setting a
 * count hook of 1 on the main state (lua.c's laction), which raises
 * "interrupted!" at the next instruction: never while a C call blocks. The
 * core's interrupt hook asks, after a signal and every 100 ms, whether that
 * hook is now set; if so the blocking call gives up (EINTR, the server
 * query cancelled) and Lua raises "interrupted!" as it returns. In
 * OpenResty, signals never reach the threads that drive streams. */
static int lua_interrupted(void *ud)
{
    lua_State *L = ud;
    return lua_gethook(L) != NULL && lua_gethookcount(L) == 1 &&
           (lua_gethookmask(L) & LUA_MASKCOUNT) != 0;
}

/* Make the blocking calls that follow on this thread interruptible by the
 * interpreter's Ctrl-C; the caller removes the hook after the call. */
static void interruptible(lua_State *L) { pgspout_set_interrupt_hook(lua_interrupted, L); }

/* --------------------------------------------------------- object release */

/* Close the stream (idempotent, no Lua calls: used by __gc too). */
static void lstream_release(lstream *ls)
{
    if (ls->s) {
        memset(&ls->final, 0, sizeof ls->final);
        ls->final.size = sizeof ls->final;
        ls->have_final = pgspout_stream_stats(ls->s, &ls->final) == PGSPOUT_OK;
        snprintf(ls->command_tag, sizeof ls->command_tag, "%s", pgspout_stream_command_tag(ls->s));
        pgspout_stream_close(ls->s);
        ls->s = NULL;
    }
    if (ls->conn) {
        if (ls->conn->active == ls)
            ls->conn->active = NULL;
        ls->conn = NULL;
    }
}

static void lconn_release(lconn *c)
{
    if (c->active)
        lstream_release(c->active); /* also clears c->active */
    if (c->conn) {
        pgspout_conn_close(c->conn);
        c->conn = NULL;
    }
}

static lconn *check_conn(lua_State *L, int idx) { return luaL_checkudata(L, idx, MT_CONN); }

static lstream *check_stream(lua_State *L, int idx) { return luaL_checkudata(L, idx, MT_STREAM); }

static int conn_gc(lua_State *L)
{
    lconn *c = lua_touserdata(L, 1);
    if (c)
        lconn_release(c);
    return 0;
}

static int stream_gc(lua_State *L)
{
    lstream *ls = lua_touserdata(L, 1);
    if (ls)
        lstream_release(ls);
    return 0;
}

static int conn_tostring(lua_State *L)
{
    lconn *c = check_conn(L, 1);
    lua_pushfstring(L, "pgspout.conn (%s): %p",
                    c->conn ? (pgspout_conn_ok(c->conn) ? "open" : "broken") : "closed", (void *)c);
    return 1;
}

static int stream_tostring(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    lua_pushfstring(L, "pgspout.stream (%s): %p",
                    ls->s ? pgspout_state_name(pgspout_stream_state(ls->s)) : "closed", (void *)ls);
    return 1;
}

/* ------------------------------------------------------------ connections */

/* connect(dsn [, opts]) -> conn | nil, err, code */
int pgspout_lua_connect(lua_State *L)
{
    const char *dsn = luaL_optstring(L, 1, "");
    pgspout_options *o;
    const char *err;
    lconn *c;
    int rc;

    if (!lua_isnoneornil(L, 1))
        dsn = pgspout_lua_cstring(L, 1, "dsn");
    rc = pgspout_lua_options(L, 2, &o, &err);
    if (rc < 0)
        return fail3(L, err, NULL, rc);
    c = lua_newuserdata(L, sizeof *c);
    c->conn = NULL;
    c->active = NULL;
    luaL_getmetatable(L, MT_CONN);
    lua_setmetatable(L, -2);
    interruptible(L);
    rc = pgspout_connect_opts(dsn, o, &c->conn);
    pgspout_set_interrupt_hook(NULL, NULL);
    if (rc < 0) {
        /* the failed handle stays owned by c (closed by __gc if this raises) */
        fail3(L, c->conn ? pgspout_conn_error(c->conn) : NULL, NULL, rc);
        lconn_release(c);
        return 3;
    }
    return 1;
}

int pgspout_lua_conn_close(lua_State *L)
{
    lconn_release(check_conn(L, 1));
    return 0;
}

int pgspout_lua_conn_ok(lua_State *L)
{
    lconn *c = check_conn(L, 1);
    lua_pushboolean(L, c->conn && pgspout_conn_ok(c->conn));
    return 1;
}

int pgspout_lua_conn_error(lua_State *L)
{
    lconn *c = check_conn(L, 1);
    if (!c->conn)
        lua_pushliteral(L, "connection is closed");
    else
        push_message(L, pgspout_conn_error(c->conn), NULL, PGSPOUT_OK);
    return 1;
}

int pgspout_lua_conn_server_version(lua_State *L)
{
    lconn *c = check_conn(L, 1);
    if (!c->conn)
        return closed_fail(L, "connection");
    lua_pushinteger(L, pgspout_conn_server_version(c->conn));
    return 1;
}

/* ---------------------------------------------------------------- streams */

static int kind_of(unsigned int oid)
{
    switch (oid) {
    case 21: /* int2 */
    case 23: /* int4 */
    case 26: /* oid */ return K_INT;
    case 20: /* int8 */ return K_INT8;
    case 700: /* float4 */
    case 701: /* float8 */ return K_FLOAT;
    case 16: /* bool */ return K_BOOL;
    default: /* numeric (1700), json (114), jsonb (3802), text... */ return K_STRING;
    }
}

/* stream_open(conn, sql [, params [, opts]]) -> stream | nil, err, code */
int pgspout_lua_stream_open(lua_State *L)
{
    lconn *c = check_conn(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    const char *const *params;
    pgspout_options *o;
    const char *err;
    lstream *ls;
    unsigned char *kinds;
    int nparams, rc, i, ncols, st;

    sql = pgspout_lua_cstring(L, 2, "sql");
    params = pgspout_lua_params(L, 3, &nparams);
    rc = pgspout_lua_options(L, 4, &o, &err);
    if (rc < 0)
        return fail3(L, err, NULL, rc);
    if (!c->conn)
        return closed_fail(L, "connection");

    ls = lua_newuserdata(L, sizeof *ls);
    memset(ls, 0, sizeof *ls);
    luaL_getmetatable(L, MT_STREAM);
    lua_setmetatable(L, -2);
    lua_createtable(L, 3, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, ENV_CONN);
    lua_setfenv(L, -2);

    /* No Lua allocation (hence no GC, no finalizer) between this check and
     * linking the new stream. */
    if (c->active) {
        st = c->active->s ? pgspout_stream_state(c->active->s) : PGSPOUT_STATE_CLOSED;
        if (st == PGSPOUT_STATE_RUNNING || st == PGSPOUT_STATE_PAUSED) {
            lua_pushnil(L);
            lua_pushliteral(L, "a stream is still open on this connection (close it first)");
            lua_pushstring(L, pgspout_code_name(PGSPOUT_EBUSY));
            return 3;
        }
        /* the previous stream ended: close it so the connection is free */
        lstream_release(c->active);
    }
    interruptible(L);
    rc = pgspout_stream_open(c->conn, sql, nparams, params, o, &ls->s);
    pgspout_set_interrupt_hook(NULL, NULL);
    ls->conn = c;
    c->active = ls;
    if (rc < 0) {
        stream_fail(L, ls, rc);
        lstream_release(ls);
        return 3;
    }

    ncols = pgspout_stream_ncols(ls->s);
    if (ncols < 0)
        ncols = 0;
    ls->ncols = ncols;
    lua_getfenv(L, -1);
    kinds = lua_newuserdata(L, (size_t)ncols + 1);
    for (i = 0; i < ncols; i++)
        kinds[i] = (unsigned char)kind_of(pgspout_stream_coltype(ls->s, i));
    lua_rawseti(L, -2, ENV_KINDS);
    lua_createtable(L, ncols, 0);
    for (i = 0; i < ncols; i++) {
        const char *name = pgspout_stream_colname(ls->s, i);
        lua_pushstring(L, name ? name : "");
        lua_rawseti(L, -2, i + 1);
    }
    lua_rawseti(L, -2, ENV_NAMES);
    lua_pop(L, 1);
    ls->kinds = kinds; /* alive as long as the environment */
    return 1;
}

/* Push one value of a row according to its column kind. */
static void push_value(lua_State *L, const pgspout_row *row, int col, int kind)
{
    size_t len;
    const char *v;

    if (pgspout_row_isnull(row, col) == 1) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    v = pgspout_row_value(row, col, &len);
    if (!v) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    switch (kind) {
    case K_INT:
    case K_INT8: {
        const char *p = v;
        int neg = 0;
        uint64_t mag = 0;
        size_t digits = 0;
        if (*p == '-') {
            neg = 1;
            p++;
        }
        while (*p >= '0' && *p <= '9' && digits < 19) {
            mag = mag * 10 + (uint64_t)(*p - '0');
            p++;
            digits++;
        }
        if (*p == '\0' && digits > 0 && mag <= (UINT64_C(1) << 53)) {
            lua_Number x = (lua_Number)mag;
            lua_pushnumber(L, neg ? -x : x);
        } else {
            /* beyond 2^53: exact text instead of a rounded number */
            lua_pushlstring(L, v, len);
        }
        return;
    }
    case K_FLOAT: {
        char *end;
        double d = parse_double(v, &end);
        if (end != v && *end == '\0')
            lua_pushnumber(L, (lua_Number)d);
        else
            lua_pushlstring(L, v, len);
        return;
    }
    case K_BOOL: lua_pushboolean(L, v[0] == 't'); return;
    default: lua_pushlstring(L, v, len); return;
    }
}

/* stream_chunk(s [, mode [, raise]]) -> rows | false (end) | nil, err, code
 * mode: 0 arrays, 1 tables keyed by column name, 2 JSON text per row.
 * One call to pgspout_stream_next_chunk; every row of the chunk converted
 * here. With raise true, an error is raised (lua_error) instead of
 * returned: the rows() iterator uses that, so a failure can never look like
 * the end of the loop. */
int pgspout_lua_stream_chunk(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    int mode, raise = lua_toboolean(L, 3);
    const pgspout_chunk *c = NULL;
    int rc, n, i, col, ncols;
    const unsigned char *kinds;

    if (lua_type(L, 2) == LUA_TSTRING) /* Lua 5.1 would read "1\0x" as 1 */
        pgspout_lua_cstring(L, 2, "mode");
    mode = (int)luaL_optinteger(L, 2, 0);
    if (mode < 0 || mode > 2)
        return luaL_argerror(L, 2, "mode must be 0 (array), 1 (map) or 2 (json)");
    if (!ls->s) {
        if (raise)
            return luaL_error(L, "pgspout: stream is closed");
        return closed_fail(L, "stream");
    }
    interruptible(L);
    rc = pgspout_stream_next_chunk(ls->s, 0, &c);
    pgspout_set_interrupt_hook(NULL, NULL);
    if (rc == PGSPOUT_DONE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc < 0 || !c) {
        if (rc >= 0)
            rc = PGSPOUT_EINTERNAL;
        if (raise) {
            lua_pushfstring(L, "pgspout: %s: ", pgspout_code_name(rc));
            push_message(L, pgspout_stream_error(ls->s), pgspout_stream_sqlstate(ls->s), rc);
            lua_concat(L, 2);
            return lua_error(L);
        }
        return stream_fail(L, ls, rc);
    }

    n = pgspout_chunk_nrows(c);
    ncols = ls->ncols;
    kinds = ls->kinds;
    lua_createtable(L, n, 0);
    if (mode == 1) {
        lua_getfenv(L, 1);
        lua_rawgeti(L, -1, ENV_NAMES);
        lua_replace(L, -2); /* names at -1, result at -2 */
        for (i = 0; i < n; i++) {
            const pgspout_row *row = pgspout_chunk_row(c, i);
            lua_createtable(L, 0, ncols);
            for (col = 0; col < ncols; col++) {
                lua_rawgeti(L, -2, col + 1);
                push_value(L, row, col, kinds[col]);
                lua_rawset(L, -3);
            }
            lua_rawseti(L, -3, i + 1);
        }
        lua_pop(L, 1);
    } else if (mode == 2) {
        for (i = 0; i < n; i++) {
            const char *js;
            size_t jlen;
            rc = pgspout_row_json(ls->s, pgspout_chunk_row(c, i), &js, &jlen);
            if (rc < 0) {
                if (raise)
                    return luaL_error(L, "pgspout: %s", pgspout_strerror(rc));
                return fail3(L, NULL, NULL, rc);
            }
            lua_pushlstring(L, js, jlen);
            lua_rawseti(L, -2, i + 1);
        }
    } else {
        for (i = 0; i < n; i++) {
            const pgspout_row *row = pgspout_chunk_row(c, i);
            lua_createtable(L, ncols, 0);
            for (col = 0; col < ncols; col++) {
                push_value(L, row, col, kinds[col]);
                lua_rawseti(L, -2, col + 1);
            }
            lua_rawseti(L, -2, i + 1);
        }
    }
    return 1;
}

static int control(lua_State *L, int (*fn)(pgspout_stream *))
{
    lstream *ls = check_stream(L, 1);
    int rc;
    if (!ls->s)
        return closed_fail(L, "stream");
    rc = fn(ls->s);
    if (rc < 0) {
        lua_pushnil(L);
        if (rc == PGSPOUT_ESTATE)
            lua_pushfstring(L, "stream is %s", pgspout_state_name(pgspout_stream_state(ls->s)));
        else
            lua_pushstring(L, pgspout_strerror(rc));
        lua_pushstring(L, pgspout_code_name(rc));
        return 3;
    }
    lua_pushboolean(L, 1);
    return 1;
}

int pgspout_lua_stream_pause(lua_State *L) { return control(L, pgspout_stream_pause); }

int pgspout_lua_stream_resume(lua_State *L) { return control(L, pgspout_stream_resume); }

int pgspout_lua_stream_cancel(lua_State *L) { return control(L, pgspout_stream_cancel); }

int pgspout_lua_stream_state(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    lua_pushstring(L, ls->s ? pgspout_state_name(pgspout_stream_state(ls->s))
                            : pgspout_state_name(PGSPOUT_STATE_CLOSED));
    return 1;
}

#define SET_NUM(field)                                                                             \
    do {                                                                                           \
        lua_pushnumber(L, (lua_Number)st->field);                                                  \
        lua_setfield(L, -2, #field);                                                               \
    } while (0)

/* stats(s) -> table (a final snapshot after close) | nil, err, code */
int pgspout_lua_stream_stats(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    pgspout_stats now, *st = &now;
    int state;

    if (ls->s) {
        memset(&now, 0, sizeof now);
        now.size = sizeof now;
        if (pgspout_stream_stats(ls->s, &now) != PGSPOUT_OK)
            return fail3(L, NULL, NULL, PGSPOUT_EINVAL);
        state = now.state;
    } else if (ls->have_final) {
        st = &ls->final;
        state = PGSPOUT_STATE_CLOSED;
    } else {
        return closed_fail(L, "stream");
    }
    lua_createtable(L, 0, 20);
    lua_pushstring(L, pgspout_state_name(state));
    lua_setfield(L, -2, "state");
    SET_NUM(chunk_rows);
    SET_NUM(rows_delivered);
    SET_NUM(rows_received);
    SET_NUM(rows_filtered);
    SET_NUM(bytes_received);
    SET_NUM(chunks);
    SET_NUM(buffered_rows);
    SET_NUM(buffered_bytes);
    SET_NUM(peak_buffered_bytes);
    SET_NUM(pauses);
    SET_NUM(time_to_first_row);
    SET_NUM(elapsed);
    SET_NUM(paused_time);
    SET_NUM(rows_per_sec);
    SET_NUM(bytes_per_sec);
    SET_NUM(expected_rows);
    SET_NUM(progress);
    SET_NUM(eta);
    return 1;
}

int pgspout_lua_stream_close(lua_State *L)
{
    lstream_release(check_stream(L, 1));
    return 0;
}

/* columns(s) -> names, type_oids | nil, err, code */
int pgspout_lua_stream_columns(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    int i;
    if (!ls->s)
        return closed_fail(L, "stream");
    lua_createtable(L, ls->ncols, 0);
    lua_createtable(L, ls->ncols, 0);
    for (i = 0; i < ls->ncols; i++) {
        const char *name = pgspout_stream_colname(ls->s, i);
        lua_pushstring(L, name ? name : "");
        lua_rawseti(L, -3, i + 1);
        lua_pushnumber(L, (lua_Number)pgspout_stream_coltype(ls->s, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 2;
}

/* command_tag(s) -> the server's command tag once the statement completed
 * ("SELECT 3", "COMMIT", "ROLLBACK" for a COMMIT of a failed transaction),
 * "" before; kept after close */
int pgspout_lua_stream_command_tag(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    lua_pushstring(L, ls->s ? pgspout_stream_command_tag(ls->s) : ls->command_tag);
    return 1;
}

/* error(s) -> message, sqlstate, code ("" and "ok" when none) */
int pgspout_lua_stream_error(lua_State *L)
{
    lstream *ls = check_stream(L, 1);
    if (!ls->s) {
        lua_pushliteral(L, "stream is closed");
        lua_pushliteral(L, "");
        lua_pushstring(L, pgspout_code_name(PGSPOUT_ESTATE));
        return 3;
    }
    push_message(L, pgspout_stream_error(ls->s), NULL, PGSPOUT_OK);
    if (pgspout_stream_errcode(ls->s) == PGSPOUT_OK) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
    lua_pushstring(L, pgspout_stream_sqlstate(ls->s));
    lua_pushstring(L, pgspout_code_name(pgspout_stream_errcode(ls->s)));
    return 3;
}

/* ------------------------------------------------------------------- init */

static void new_mt(lua_State *L, const char *name, lua_CFunction gc, lua_CFunction tostring,
                   const char *methods_field)
{
    luaL_newmetatable(L, name);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    if (tostring) {
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
    }
    if (methods_field) {
        /* __index: a methods table the Lua layer (pgspout.lua) fills */
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "__index");
        lua_setfield(L, -3, methods_field); /* module[methods_field] */
        lua_pushliteral(L, "pgspout");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

int pgspout_lua_init(lua_State *L)
{
    /* module table on top */
    new_mt(L, MT_BOX, box_gc, NULL, NULL);
    new_mt(L, MT_OPTS, opts_gc, NULL, NULL);
    new_mt(L, MT_CONN, conn_gc, conn_tostring, "conn_methods");
    new_mt(L, MT_STREAM, stream_gc, stream_tostring, "stream_methods");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 0;
}
