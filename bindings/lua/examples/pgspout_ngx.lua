--- The content handlers of the OpenResty example (see nginx.conf.in).
--
-- /stream opens a registry stream in a pool thread, then loops: fetch the
-- next chunk (as NDJSON) in a pool thread, ngx.print it, ngx.flush(true).
-- flush(true) waits until the client took the bytes, so a slow client slows
-- the fetching (backpressure): the stream buffers at most one chunk, the
-- server blocks on its socket, and nginx never holds more than a chunk.
-- A client that disconnects triggers ngx.on_abort (lua_check_client_abort on)
-- or a failed flush: either way the registry stream is closed, which cancels
-- the server query. The abort handler is registered before the open, so a
-- client that leaves while the stream opens is noticed too. If this handler
-- is ever abandoned without that, the registry reaps the stream after
-- idle_timeout.
--
-- Streams run on pooled connections (pgspout.pool in the worker functions,
-- one pool per nginx worker process, shared by its pool threads): a
-- request opens no PostgreSQL backend in steady state, and a stream's
-- connection goes back to the pool (reset) as soon as it ends, is cancelled
-- or closed. When every pooled connection is in use, an open waits at most
-- the pool's acquire_timeout (short: the wait holds one of nginx's pool
-- threads) and the request gets 503 with a JSON error. Before that, a
-- request queues for a slot on the event loop (pgspout_ngx_slots: as many
-- as the pool has connections), so that opens never hold the threads the
-- running streams need; no slot within PGSPOUT_POOL_WAIT: 503 too.
--
-- Query arguments are validated: /stream?n=abc (or n out of [0, 1e8]) is
-- answered 400 with {"error": ..., "param": "n", "value": ...}.
local pgspout = require "pgspout"
local slots = require "pgspout_ngx_slots"

local run = ngx.run_worker_thread
local POOL = "pgspout"
-- closes and cancels run in a thread pool of their own (nginx.conf.in): in
-- the shared one they would queue behind every open and fetch already
-- posted, so a client leaving a busy server held its query and connection
-- until that queue had drained
local STOP_POOL = "pgspout_stop"
local STOPS = { close = true, cancel = true }
local WORKER = "pgspout_ngx_worker"

-- the demo query: parameters travel separately from the SQL. The series
-- is in the select list (ProjectSet), which hands out its rows as they are
-- made: in FROM (a Function Scan) PostgreSQL first materializes all N rows
-- (5M: ~0.7 s, spilled to disk) before the first one, and the open waits
-- for that in a pool thread, holding up every task queued behind it (the
-- closes of aborted requests too: bench/openresty/README.md).
local SQL = "SELECT g AS id, md5(g::text) AS h FROM (SELECT generate_series(1, $1::int) AS g) s"
local OPTS = { chunk_rows = 1000, max_memory = "16MB", label = "nginx",
               idle_timeout = "30s" }
-- rows per fetch (one pool-thread round trip): a fetch waits only for its
-- first rows, then takes what is already received, up to this many
local FETCH_ROWS = 5000

local M = {}

M.SQL = SQL -- the demo query (/sse streams it too)

local function dsn()
    return os.getenv("PGSPOUT_DSN") or ""
end

--- call(fn, ...): run a worker function (pgspout_ngx_worker) in nginx's
-- thread pool (closes and cancels in their own); returns its results, or
-- nil, err when the thread pool call itself failed. The worker's log
-- records go to ngx.log.
function M.call(fn, ...)
    local res = { run(STOPS[fn] and STOP_POOL or POOL, WORKER, fn, ...) }
    if not res[1] then return nil, tostring(res[2]) end
    pgspout.log(res[2])
    return unpack(res, 3, table.maxn(res))
end
local call = M.call

--- answer(status, t): answers status with t as JSON and ends the handler
-- (for errors: 400 bad arguments, 503 busy, 502 the database refused...)
function M.answer(status, t)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(pgspout.json(t))
    return ngx.exit(ngx.HTTP_OK) -- the response is out: end the handler, keep the status
end
local answer = M.answer

--- open(sql, params, opts) -> stream: a registry stream for this request,
-- the way /stream and /sse open theirs. Registers the request's abort
-- handler first (a client that leaves while queued for a slot ends the
-- request at once; once the stream is open, its close), takes a
-- connection slot (pgspout_ngx_slots, queued on the event loop), then
-- opens the stream in the thread pool on the worker process's pool. When it
-- cannot (no slot within PGSPOUT_POOL_WAIT, the pool exhausted: 503; the
-- open failed: 502) it answers with a JSON error and ends the handler; a
-- client gone meanwhile ends it with 499. The stream: .id, .aborted (the
-- client left: the abort handler closed it), .close() (idempotent: closes
-- the registry stream, which cancels its query and gives its connection
-- back, then the slot). One open per request (ngx.on_abort can be
-- registered once).
function M.open(sql, params, opts)
    local s = { aborted = false }
    local closed, opening = false, false
    function s.close()
        if closed or not s.id then return end
        closed = true
        local st, err = call("close", s.id)
        if st ~= "ok" then
            ngx.log(ngx.INFO, "pgspout close ", s.id, ": ", err)
        end
        slots.release()
    end
    local ok, err = ngx.on_abort(function()
        s.aborted = true
        if not opening then return ngx.exit(499) end -- still queued for a slot
        if not s.id then return end -- the open is still running: see below
        ngx.log(ngx.INFO, "client went away: closing registry stream ", s.id)
        s.close()
        ngx.exit(499)
    end)
    if not ok then
        ngx.log(ngx.WARN, "ngx.on_abort: ", err)
    end

    local sok, serr = slots.acquire()
    if not sok then
        return answer(503, { error = "busy: no database connection free",
                             detail = "no slot within " .. slots.wait .. " s: " .. tostring(serr) })
    end
    opening = true
    local status, res, code = call("open", dsn(), sql, params, opts)
    if status ~= "ok" then
        slots.release()
        ngx.log(ngx.ERR, "pgspout open: ", res)
        if code == "etimeout" then -- every pooled connection in use
            return answer(503, { error = "busy: no database connection free", detail = res })
        end
        return answer(502, { error = "could not open the stream", detail = res })
    end
    s.id = res
    if s.aborted then
        s.close()
        return ngx.exit(499)
    end
    return s
end

local MAX_N = 100000000

-- n: absent = 1000, else decimal digits only, within [0, MAX_N]. A repeated
-- argument (?n=1&n=2) arrives as a table and is refused too.
local function arg_n()
    local args = ngx.req.get_uri_args(16)
    local raw = args.n
    if raw == nil then return 1000 end
    if type(raw) ~= "string" or not raw:match("^%d+$") or #raw > 9 or tonumber(raw) > MAX_N then
        return nil, type(raw) == "string" and raw or tostring(raw)
    end
    return tonumber(raw)
end

function M.stream()
    local n, bad = arg_n()
    if not n then
        return answer(400, { error = "n must be an integer in [0, " .. MAX_N .. "]",
                             param = "n", value = bad })
    end
    local s = M.open(SQL, { n }, OPTS)

    ngx.header["Content-Type"] = "application/x-ndjson"
    ngx.header["X-Pgspout-Stream"] = tostring(s.id)
    while true do
        local st, out = call("fetch", s.id, FETCH_ROWS)
        if st == "done" then break end
        if st ~= "rows" then
            if s.aborted then return ngx.exit(499) end -- the abort handler closed it
            -- An error mid-stream must not look like a normal end: log it
            -- and cut the connection, so the client sees a truncated
            -- (unterminated chunked) response, not a complete one.
            ngx.log(ngx.ERR, "pgspout stream ", s.id, ": ", out)
            s.close()
            return ngx.exit(ngx.ERROR)
        end
        ngx.print(out)
        local fok, ferr = ngx.flush(true)
        if not fok then
            ngx.log(ngx.INFO, "flush failed (", ferr, "): cancelling stream ", s.id)
            s.close()
            return ngx.exit(499)
        end
    end
    s.close()
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
