--- Functions run inside nginx's thread pool by ngx.run_worker_thread.
--
-- Each call runs in a Lua VM of the pool thread it lands on, so nothing but
-- the registry id travels between calls: the stream itself lives in
-- pgspout's process-wide registry. Results are plain values (a status
-- string first, so no nil ever has to cross the thread boundary).
local pgspout = require "pgspout"

-- Pool threads run at a lower CPU priority than nginx's event loop (nice
-- PGSPOUT_THREAD_NICE, default 10; 0 disables): when the machine is busy,
-- the event loop (every other request, /ping, /metrics) still gets the CPU
-- first and the database work takes what is left. Linux only, via the FFI;
-- the nice value of a thread can only go up, so setting it on every call
-- is a cheap no-op after the first.
local lower_priority = function() end
do
    local nice = tonumber(os.getenv("PGSPOUT_THREAD_NICE") or "10") or 10
    local ok, ffi = pcall(require, "ffi")
    if ok and nice > 0 and ffi.os == "Linux" then
        pcall(ffi.cdef, [[
            long syscall(long number, ...);
            int setpriority(int which, unsigned int who, int prio);
        ]])
        local SYS_gettid = ffi.arch == "x64" and 186 or (ffi.arch == "arm64" and 178 or nil)
        if SYS_gettid then
            lower_priority = function()
                local tid = ffi.C.syscall(SYS_gettid)
                ffi.C.setpriority(0, tid, nice) -- PRIO_PROCESS + a tid: this thread
            end
        end
    end
end

local M = {}

-- The worker process's pool: pgspout.pool returns the same process-wide
-- pool to every VM that asks with the same DSN and keys, so all the pool
-- threads of this nginx worker share its connections (each nginx worker
-- process has its own). max_size bounds the backends this worker opens;
-- acquire_timeout is short because a waiting open holds one of nginx's pool
-- threads, which the running streams need for their fetches.
local POOL_OPTS = {
    max_size = tonumber(os.getenv("PGSPOUT_POOL_SIZE") or "") or 32,
    acquire_timeout = "500ms",
    application_name = "pgspout_ngx",
}
local pools = {} -- per VM: dsn -> pool object (the C pool is the same)

local function pool_for(dsn)
    local p = pools[dsn]
    if not p then
        local err, code
        p, err, code = pgspout.pool(dsn, POOL_OPTS)
        if not p then return nil, err, code end
        pools[dsn] = p
    end
    return p
end

-- PGSPOUT_POOL=off: no pool, every stream opens a PostgreSQL connection of
-- its own, closed at its end (what the example did before pools; for
-- comparison, bench/openresty)
local POOLED = os.getenv("PGSPOUT_POOL") ~= "off"

--- open(dsn, sql, params, opts) -> "ok", id | "error", message, code
function M.open(dsn, sql, params, opts)
    lower_priority()
    local id, err, code
    if not POOLED then
        local o = { pool = "off", application_name = POOL_OPTS.application_name }
        for k, v in pairs(opts or {}) do o[k] = o[k] or v end
        id, err, code = pgspout.registry_open(dsn, sql, params, o)
        if not id then return "error", err, code end
        return "ok", id
    end
    local p
    p, err, code = pool_for(dsn)
    if not p then return "error", err, code end
    id, err, code = p:registry_open(sql, params, opts)
    if not id then return "error", err, code end
    return "ok", id
end

--- fetch(id, max_rows) -> "rows", ndjson, nrows | "done" | "error", message, code
-- Blocks this pool thread (not the event loop) until rows are there.
function M.fetch(id, max_rows)
    lower_priority()
    local out, nrows_or_err, code = pgspout.registry_fetch(id, max_rows)
    if out then return "rows", out, nrows_or_err end
    if nrows_or_err then return "error", nrows_or_err, code end
    return "done"
end

--- close(id) -> "ok" | "error", message. Cancels a running query.
function M.close(id)
    lower_priority()
    local ok, err = pgspout.registry_close(id)
    if ok then return "ok" end
    return "error", err
end

--- cancel(id) -> "ok" | "error", message, code. Cancels the query but keeps
-- the id (its stats and the end a fetch reports stay): POST
-- /streams/{id}/cancel (pgspout_ngx_sse.lua). In a pool thread because
-- ending the cancelled stream may wait for the server to take the cancel.
function M.cancel(id)
    lower_priority()
    local ok, err, code = pgspout.registry_cancel(id)
    if ok then return "ok" end
    return "error", err, code
end

-- Every function's results come after the log records its call produced
-- (server notices and warnings, pgspout's own lines): a worker thread has
-- no ngx.log, so the request writes them (pgspout.log).
local with_log = {}
for name, fn in pairs(M) do
    with_log[name] = function(...) return (function(...)
        return pgspout.take_log(), ...
    end)(fn(...)) end
end
return with_log
