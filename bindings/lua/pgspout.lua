--- pgspout: stream PostgreSQL query results into Lua (LuaJIT, OpenResty,
-- Lua 5.1) without holding the whole result.
--
--     local pgspout = require "pgspout"
--     local conn, err = pgspout.connect("host=... dbname=...")
--     local s, err = conn:stream("SELECT id, name FROM t WHERE x > $1", {10},
--                                {chunk_rows = 1000, max_memory = "64MB"})
--     for row in s:rows() do print(row[1], row[2]) end    -- arrays
--     for row in s:rows("map") do print(row.id) end        -- keyed by column
--     s:close(); conn:close()
--
-- Conventions
--  * Failures the database or the library reports (connection refused, SQL
--    errors, limits, unknown or malformed options, a closed object) return
--    `nil, message, code` where code is the stable code name ("esql",
--    "eoption", "estate", ...). Messages of server errors end in
--    "(SQLSTATE xxxxx)".
--  * Programming errors - an argument of the wrong Lua type - raise, like
--    the Lua standard library does. So does a string with an embedded NUL
--    byte (SQL, DSN, parameter, option name or value), which the C library
--    would cut short: "pgspout: einval: sql contains a NUL byte"; nothing
--    is sent.
--  * `for row in s:rows()` raises when the stream fails (message
--    "pgspout: <code>: <text> (SQLSTATE xxxxx)"); the loop never just ends
--    early. Wrap it in pcall to handle the error.
--  * Options are a Lua table passed to the core key by key; numbers and
--    booleans are converted to text ("64MB", 1000, true all work).
--  * Parameters are an array: strings, numbers (integers sent exactly),
--    booleans, or pgspout.null for SQL NULL (set `n` for trailing nils).
--  * All calls except pause/resume/cancel/state/stats block the calling
--    thread; under OpenResty use the registry from ngx.run_worker_thread
--    (see examples/).
--
-- Values (converted in C, one call per chunk of rows):
--   int2/int4/oid/float4/float8 -> number; int8 -> number when |v| <= 2^53,
--   else a string with the exact digits; numeric -> string (exact); bool ->
--   boolean; NULL -> pgspout.null (== ngx.null == cjson.null, a NULL light
--   userdata); json/jsonb -> JSON text; anything else -> PostgreSQL's text.
--
-- Garbage collection: a stream keeps its connection alive; a stream dropped
-- half-read is closed by the GC (its server query cancelled); a connection
-- closes its open stream first. close() may be called any number of times.

local core = require "pgspout_core"

local M = {
    _VERSION = core.version(),
    core = core,
    -- NULL sentinel: a NULL light userdata, equal to ngx.null and cjson.null
    null = core.null,
}
if type(ngx) == "table" and ngx.null ~= nil then
    M.null = ngx.null
end

local Conn = core.conn_methods
local Stream = core.stream_methods

local stream_chunk = core.stream_chunk
local code_name = core.code_name
local strerror = core.strerror

local MODES = { array = 0, map = 1, json = 2 }

local function mode_of(mode, level)
    if mode == nil then return 0 end
    local m = MODES[mode]
    if not m then
        error("bad rows mode '" .. tostring(mode) .. "' (array, map or json)", level + 1)
    end
    return m
end

local function rc_result(rc)
    if rc >= 0 then return true end
    return nil, strerror(rc), code_name(rc)
end

---------------------------------------------------------------- module

--- connect(dsn [, opts]) -> conn | nil, err, code
-- dsn: libpq conninfo or URI ("" or nil: PG* environment variables).
-- opts: connection keys (connect_timeout, keepalives_*, application_name...).
function M.connect(dsn, opts)
    return core.connect(dsn, opts)
end

--- Prometheus text exposition of the process-wide metrics.
function M.metrics_text()
    return core.metrics_prometheus()
end

--- The same metrics as JSON text.
function M.metrics_json()
    return core.metrics_json()
end

--- Zero counters and histograms (tests).
function M.metrics_reset()
    core.metrics_reset()
end

M.version = core.version
M.transport = core.transport
M.strerror = strerror
M.code_name = code_name
M.state_name = core.state_name

---------------------------------------------------------------- conn

--- conn:stream(sql [, params [, opts]]) -> stream | nil, err, code
-- One open stream per connection: opening a new one closes the previous
-- stream if it has ended, and fails with "ebusy" while it still runs.
function Conn:stream(sql, params, opts)
    return core.stream_open(self, sql, params, opts)
end

Conn.close = core.conn_close            -- conn:close(); idempotent
Conn.ok = core.conn_ok                  -- true if usable
Conn.error = core.conn_error            -- last error text
Conn.server_version = core.conn_server_version

---------------------------------------------------------------- stream

--- for row in s:rows([mode]) do ... end
-- mode: "array" (default), "map" (keyed by column name) or "json" (one JSON
-- text per row). Raises on a stream error.
function Stream:rows(mode)
    local m = mode_of(mode, 2)
    local s = self
    local chunk, i, n = nil, 0, 0
    return function()
        while i >= n do
            if n < 0 then return nil end
            local c = stream_chunk(s, m, true)
            if not c then
                chunk, i, n = nil, 0, -1
                return nil
            end
            chunk, i, n = c, 0, #c
        end
        i = i + 1
        return chunk[i]
    end
end

--- s:chunk([mode]) -> array of rows | nil at the end | nil, err, code
-- The next chunk of rows (every row the library has buffered, at least one).
function Stream:chunk(mode)
    local c, err, code = stream_chunk(self, mode_of(mode, 2), false)
    if c == false then return nil end
    return c, err, code
end

Stream.pause = core.stream_pause        -- true | nil, err, code
Stream.resume = core.stream_resume      -- true | nil, err, code
Stream.cancel = core.stream_cancel      -- true | nil, err, code
Stream.state = core.stream_state        -- "running", "paused", "done", ...
Stream.stats = core.stream_stats        -- table (final snapshot after close)
Stream.close = core.stream_close        -- idempotent
Stream.columns = core.stream_columns    -- names, type oids
Stream.error = core.stream_error        -- message, sqlstate, code
Stream.command_tag = core.stream_command_tag -- "SELECT 3", "COMMIT", "ROLLBACK"...

---------------------------------------------------------------- registry
-- A process-wide table of streams addressed by a numeric id, usable from
-- any thread and any Lua VM of the process (ngx.run_worker_thread). Each
-- registry stream owns its connection. Streams idle longer than their
-- idle_timeout option (default 60s) are reaped by a background thread.

--- registry_open(dsn, sql [, params [, opts]]) -> id | nil, err, code
function M.registry_open(dsn, sql, params, opts)
    local rc, id, err = core.registry_open(dsn, sql, params, opts)
    if rc == nil then return nil, id, err end       -- bad option
    if rc < 0 then return nil, err or strerror(rc), code_name(rc) end
    return id
end

--- registry_fetch(id [, max_rows]) -> ndjson, nrows | nil (done) | nil, err, code
-- The next rows (at most max_rows; 0 or nil: the stream's chunk) as NDJSON
-- text, one JSON object per line.
function M.registry_fetch(id, max_rows)
    local rc, out, nrows, err = core.registry_fetch(id, max_rows or 0)
    if rc == 0 then return out, nrows end
    if rc == 1 then return nil end
    return nil, err or strerror(rc), code_name(rc)
end

function M.registry_pause(id) return rc_result(core.registry_pause(id)) end
function M.registry_resume(id) return rc_result(core.registry_resume(id)) end
function M.registry_cancel(id) return rc_result(core.registry_cancel(id)) end
--- Close and forget (cancels a running query). true | nil, err, "enotfound"
function M.registry_close(id) return rc_result(core.registry_close(id)) end

--- registry_stats(id) -> JSON text of the stream's stats | nil, err, code
function M.registry_stats(id)
    local js = core.registry_stats_json(id)
    if js == nil then
        return nil, strerror(core.PGSPOUT_ENOTFOUND), code_name(core.PGSPOUT_ENOTFOUND)
    end
    return js
end

--- registry_list() -> JSON text: [{"id":..,"sql":..,"idle_ms":..,"stats":{..}}]
function M.registry_list()
    return core.registry_list_json()
end

--- registry_reap() -> number of idle streams reaped now
function M.registry_reap()
    return core.registry_reap()
end

return M
