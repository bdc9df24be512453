--- A small query from a content handler, the example's way: take a
-- connection slot (pgspout_ngx_slots), open a registry stream on the worker
-- process's pool, fetch its rows as NDJSON and close it, each database step
-- in nginx's thread pool (pgspout_ngx_worker), never on the event loop.
-- For results a request sends whole (a row by id, a short list); stream
-- big ones as pgspout_ngx.stream does, chunk by chunk with backpressure.
--
--     local query = require "pgspout_ngx_query"
--     local body, status, err = query.run("SELECT ... WHERE id = $1", { id })
--     if not body then return query.error(status, err) end
--     ngx.print(body)
--
-- One run per request (it registers the request's ngx.on_abort handler,
-- which can be done once). A client that goes away is noticed (ngx.on_abort, lua_check_client_abort
-- on): the stream is closed at once, which cancels a running query and
-- gives the connection back, and the request ends with 499.
local pgspout = require "pgspout"
local slots = require "pgspout_ngx_slots"

local run = ngx.run_worker_thread
local POOL = "pgspout"
local WORKER = "pgspout_ngx_worker"

local M = {}

-- default stream options: a small result, bounded
M.OPTS = { chunk_rows = 100, max_rows = 10000, max_memory = "4MB", label = "query",
           idle_timeout = "30s" }

local function call(fn, ...)
    local res = { run(POOL, WORKER, fn, ...) }
    if not res[1] then return nil, tostring(res[2]) end
    pgspout.log(res[2])
    return unpack(res, 3, table.maxn(res))
end

--- run(sql [, params [, opts]]) -> ndjson (possibly "") | nil, http status, error table
-- opts: stream options (default M.OPTS); its max_rows bounds the result.
function M.run(sql, params, opts)
    local id, closed, aborted, opening = nil, false, false, false
    local function close()
        if closed or not id then return end
        closed = true
        local st, err = call("close", id)
        if st ~= "ok" then ngx.log(ngx.INFO, "pgspout close ", id, ": ", err) end
        slots.release()
    end
    local ok, err = ngx.on_abort(function()
        aborted = true
        if not opening then return ngx.exit(499) end -- still queued for a slot
        if not id then return end -- the open is running: closed after it
        close()
        ngx.exit(499)
    end)
    if not ok and err ~= "duplicate call" then ngx.log(ngx.WARN, "ngx.on_abort: ", err) end

    local sok, serr = slots.acquire()
    if not sok then
        return nil, 503, { error = "busy: no database connection free",
                           detail = "no slot within " .. slots.wait .. " s: " .. tostring(serr) }
    end
    opening = true
    local st, res, code = call("open", os.getenv("PGSPOUT_DSN") or "", sql, params, opts or M.OPTS)
    if st ~= "ok" then
        slots.release()
        ngx.log(ngx.ERR, "pgspout open: ", res)
        if code == "etimeout" then
            return nil, 503, { error = "busy: no database connection free", detail = res }
        end
        return nil, 502, { error = "query failed", detail = res, code = code }
    end
    id = res
    if aborted then
        close()
        return ngx.exit(499)
    end
    local out = {}
    while true do
        local fst, rows = call("fetch", id, 1000)
        if fst == "done" then break end
        if fst ~= "rows" then
            if aborted then return ngx.exit(499) end -- the abort handler closed it
            close()
            ngx.log(ngx.ERR, "pgspout stream ", id, ": ", rows)
            return nil, 502, { error = "query failed", detail = rows }
        end
        out[#out + 1] = rows
    end
    close()
    return table.concat(out)
end

--- error(status, t): answers status with t as JSON and ends the handler
function M.error(status, t)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(pgspout.json(t))
    return ngx.exit(ngx.HTTP_OK)
end

return M
