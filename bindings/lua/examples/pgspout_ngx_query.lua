--- A small query from a content handler, the example's way: take a
-- connection slot (pgspout_ngx_slots), then one task in nginx's thread pool
-- (pgspout_ngx_query_worker) opens a registry stream on the worker
-- process's pool, fetches its rows as NDJSON and closes it - never on the
-- event loop, and one thread-pool round trip instead of one per step
-- (open, fetch, the fetch that sees the end, close: 4). For results a
-- request sends whole (a row by id, a short list); stream big ones as
-- pgspout_ngx.stream does, chunk by chunk with backpressure.
--
--     local query = require "pgspout_ngx_query"
--     local body, status, err = query.run("SELECT ... WHERE id = $1", { id })
--     if not body then return query.error(status, err) end
--     ngx.print(body)
--
-- One run per request (it registers the request's ngx.on_abort handler,
-- which can be done once). A client that leaves while the request queues
-- for a slot ends it at once; one that leaves while the query runs does not
-- cancel it (the task holds the stream): the query runs to its end, bounded
-- by the stream options' timeout (10 s by default) and max_rows, the
-- connection goes back, and the request ends with 499.
local pgspout = require "pgspout"
local slots = require "pgspout_ngx_slots"

local run = ngx.run_worker_thread
local POOL = "pgspout"
local QWORKER = "pgspout_ngx_query_worker"
local FETCH_ROWS = 1000

local M = {}

-- default stream options: a small result, bounded
M.OPTS = { chunk_rows = 100, max_rows = 10000, max_memory = "4MB", timeout = "10s",
           label = "query", idle_timeout = "30s" }

--- run(sql [, params [, opts]]) -> ndjson (possibly "") | nil, http status, error table
-- opts: stream options (default M.OPTS); its max_rows bounds the result,
-- its timeout how long the query may hold its connection.
function M.run(sql, params, opts)
    local aborted, queued = false, true
    local ok, err = ngx.on_abort(function()
        aborted = true
        if queued then return ngx.exit(499) end -- still waiting for a slot
        -- else the query's task runs to its end (a small query, bounded by
        -- its timeout), gives the connection back, and the request ends
    end)
    if not ok and err ~= "duplicate call" then ngx.log(ngx.WARN, "ngx.on_abort: ", err) end

    local sok, serr = slots.acquire()
    if not sok then
        return nil, 503, { error = "busy: no database connection free",
                           detail = "no slot within " .. slots.wait .. " s: " .. tostring(serr) }
    end
    queued = false
    local res = { run(POOL, QWORKER, "query", os.getenv("PGSPOUT_DSN") or "", sql, params,
                      opts or M.OPTS, FETCH_ROWS) }
    slots.release()
    if not res[1] then
        ngx.log(ngx.ERR, "pgspout query: thread pool: ", res[2])
        return nil, 502, { error = "query failed", detail = tostring(res[2]) }
    end
    pgspout.log(res[2])
    if aborted then return ngx.exit(499) end
    local st, body, code = res[3], res[4], res[5]
    if st ~= "ok" then
        ngx.log(ngx.ERR, "pgspout query: ", body)
        if code == "etimeout" then -- every pooled connection in use
            return nil, 503, { error = "busy: no database connection free", detail = body }
        end
        return nil, 502, { error = "query failed", detail = body, code = code }
    end
    return body
end

--- error(status, t): answers status with t as JSON and ends the handler
-- (pgspout_ngx.answer)
M.error = require("pgspout_ngx").answer

return M
