--- The content handlers of the OpenResty example (see nginx.conf.in).
--
-- /stream opens a registry stream in a pool thread, then loops: fetch the
-- next chunk (as NDJSON) in a pool thread, ngx.print it, ngx.flush(true).
-- flush(true) waits until the client took the bytes, so a slow client slows
-- the fetching (backpressure): the stream buffers at most one chunk, the
-- server blocks on its socket, and nginx never holds more than a chunk.
-- A client that disconnects triggers ngx.on_abort (lua_check_client_abort on)
-- or a failed flush: either way the registry stream is closed, which cancels
-- the server query. If this handler is ever abandoned without that, the
-- registry reaps the stream after idle_timeout.
local pgspout = require "pgspout"

local run = ngx.run_worker_thread
local POOL = "pgspout"
local WORKER = "pgspout_ngx_worker"

-- the demo query: parameters travel separately from the SQL
local SQL = "SELECT g AS id, md5(g::text) AS h FROM generate_series(1, $1::int) g"
local OPTS = { chunk_rows = 1000, max_memory = "16MB", label = "nginx",
               idle_timeout = "30s" }
-- rows per fetch (one pool-thread round trip): a fetch waits only for its
-- first rows, then takes what is already received, up to this many
local FETCH_ROWS = 5000

local M = {}

local function dsn()
    return os.getenv("PGSPOUT_DSN") or ""
end

-- run a worker function; returns its results or nil, err when the pool
-- call itself failed
local function call(fn, ...)
    local res = { run(POOL, WORKER, fn, ...) }
    if not res[1] then return nil, tostring(res[2]) end
    return unpack(res, 2, table.maxn(res))
end

function M.stream()
    local n = tonumber(ngx.var.arg_n) or 1000
    if n < 0 or n > 1e8 or n ~= math.floor(n) then
        ngx.status = 400
        ngx.say("n must be an integer in [0, 1e8]")
        return
    end

    local status, id = call("open", dsn(), SQL, { n }, OPTS)
    if status ~= "ok" then
        ngx.log(ngx.ERR, "pgspout open: ", id)
        ngx.status = 502
        ngx.say("could not open the stream: ", id)
        return
    end

    local closed = false
    local function close()
        if closed then return end
        closed = true
        local st, err = call("close", id)
        if st ~= "ok" then
            ngx.log(ngx.INFO, "pgspout close ", id, ": ", err)
        end
    end

    local ok, err = ngx.on_abort(function()
        ngx.log(ngx.INFO, "client went away: cancelling registry stream ", id)
        close()
        ngx.exit(499)
    end)
    if not ok then
        ngx.log(ngx.WARN, "ngx.on_abort: ", err)
    end

    ngx.header["Content-Type"] = "application/x-ndjson"
    ngx.header["X-Pgspout-Stream"] = tostring(id)
    while true do
        local st, out = call("fetch", id, FETCH_ROWS)
        if st == "done" then break end
        if st ~= "rows" then
            -- An error mid-stream must not look like a normal end: log it
            -- and cut the connection, so the client sees a truncated
            -- (unterminated chunked) response, not a complete one.
            ngx.log(ngx.ERR, "pgspout stream ", id, ": ", out)
            close()
            return ngx.exit(ngx.ERROR)
        end
        ngx.print(out)
        local fok, ferr = ngx.flush(true)
        if not fok then
            ngx.log(ngx.INFO, "flush failed (", ferr, "): cancelling stream ", id)
            close()
            return ngx.exit(499)
        end
    end
    close()
end

function M.streams()
    ngx.header["Content-Type"] = "application/json"
    ngx.print(pgspout.registry_list())
end

function M.metrics()
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.print(pgspout.metrics_text())
end

return M
