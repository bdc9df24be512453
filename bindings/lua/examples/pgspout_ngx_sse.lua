--- Live control from a browser (locations in nginx.conf.in): a registry
-- stream as Server-Sent Events, control endpoints, and a status page.
--
--   GET  /sse?n=N[&rate=R][&every=MS]   text/event-stream of the demo query
--   GET  /streams/{id}                  one registry stream's stats (JSON)
--   POST /streams/{id}/pause | resume | cancel
--   GET  /status                        status.html (beside this file)
--
-- /sse opens a registry stream of the demo query (n rows) and sends, each
-- flushed on its own (ngx.flush(true): a slow client slows the stream, as
-- /stream does):
--   event: stream    {"id": ID, "n": N, "rate": R, "every_ms": MS,
--                     "expected_rows": N, "eta": "<what the ETA is based on>"}
--   event: rows      a JSON array of rows ({"id":..., "h":...}), one event
--                    per fetch (at most BATCH rows)
--   event: progress  every `every` ms (default 1000), paused or not:
--                    {"id": ID, "sent": rows sent in `rows` events,
--                     "stats": the stream's stats, as in /streams}
--   event: end       {"id", "state": "done" | "cancelled", "sent", "stats"}
--   event: error     {"id", "error", "code", "sent", "stats"} (the stream
--                    failed: an error is never sent as an end)
-- Errors before the stream opens are HTTP answers (400/502/503 + JSON).
--
-- Progress and ETA: the stream is opened with expected_rows = n (the demo
-- query returns exactly n rows), so stats.progress is rows_delivered / n
-- and stats.eta is the rows left divided by the mean rate while not paused
-- (pgspout's stats; -1 before the first row).
--
-- rate (rows/s, 0 = as fast as the client takes them) is kept on the event
-- loop: the handler sleeps (ngx.sleep) between fetches of rate/10 rows, so
-- a throttled stream holds no pool thread while it waits, and the server
-- blocks on its socket (ClientWrite) meanwhile.
--
-- Pause: POST /streams/{id}/pause pauses the registry stream (pgspout
-- reads nothing more from the server); the handler sees the state before
-- each fetch and stops fetching, sending progress events only, until it is
-- resumed. A pause that lands while a fetch waits with no rows buffered
-- keeps that fetch (and its pool thread) waiting until the resume: the fetch
-- runs in a light thread, so progress events go on meanwhile. A stream left
-- paused past its idle_timeout (IDLE below) is reaped: the events end with
-- an error. Cancel (POST /streams/{id}/cancel, or a failed flush, or the
-- client gone: ngx.on_abort, registered before the open) ends the query;
-- the handler then closes the registry stream, whose connection goes back
-- to the pool.
--
-- The control endpoints act on any registry stream of this worker process
-- (the /stream ones too) and have no authentication: the example listens
-- on 127.0.0.1 only.
local pgspout = require "pgspout"
local semaphore = require "ngx.semaphore"

local ngxm = require "pgspout_ngx" -- call, answer, open and the demo query

local SQL = ngxm.SQL
local BATCH = 1000 -- rows per `rows` event, at most
local IDLE = "10min" -- the longest pause before the stream is reaped

local M = {}

local call = ngxm.call
local answer = ngxm.answer -- a JSON answer that ends the request

local function now()
    ngx.update_time()
    return ngx.now()
end

-- the integer query argument `name` in [lo, hi] (absent: def), else 400
local function int_arg(args, name, def, lo, hi)
    local raw = args[name]
    if raw == nil then return def end
    if type(raw) == "string" and raw:match("^%d+$") and #raw <= 9 then
        local v = tonumber(raw)
        if v >= lo and v <= hi then return v end
    end
    return answer(400, { error = ("%s must be an integer in [%d, %d]"):format(name, lo, hi),
                         param = name, value = type(raw) == "string" and raw or tostring(raw) })
end

-- state of a registry stream ("running", "paused", "done", "cancelled",
-- "failed"...) from its stats JSON (pgspout writes "state" first); nil when
-- the id is unknown
local function state_of(stats_json)
    return stats_json and stats_json:match('^{"state":"(%a+)"')
end

-- NDJSON (one row per line) -> a JSON array (JSON text has no raw newline)
local function json_array(ndjson)
    return "[" .. (ndjson:gsub("\n$", ""):gsub("\n", ",")) .. "]"
end

-- one event, flushed: true, or nil, err when the client is gone
local function send(event, data)
    ngx.print("event: ", event, "\ndata: ", data, "\n\n")
    return ngx.flush(true)
end

-- fetch(id, max_rows) in a light thread: the caller waits on p.sema (with
-- a timeout, to send progress meanwhile), then reads p.res
local function start_fetch(id, max_rows)
    local p = { sema = semaphore.new() }
    ngx.thread.spawn(function()
        p.res = { pcall(call, "fetch", id, max_rows) }
        p.sema:post(1)
    end)
    return p
end

function M.events()
    local args = ngx.req.get_uri_args(16)
    local n = int_arg(args, "n", 1000, 0, 100000000)
    local rate = int_arg(args, "rate", 0, 0, 10000000)
    local every = int_arg(args, "every", 1000, 100, 60000) / 1000

    -- rows per fetch: a tenth of a second's worth when throttled; chunks of
    -- that size keep the stream's rows_delivered close to the rows sent
    local batch = rate > 0 and math.max(1, math.min(BATCH, math.ceil(rate / 10))) or BATCH
    local opts = { chunk_rows = batch, max_memory = "16MB", label = "sse", idle_timeout = IDLE,
                   expected_rows = n }
    -- a connection slot, then the stream, as /stream's (answers 503/502)
    local s = ngxm.open(SQL, { n }, opts)
    local id, close = s.id, s.close

    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
    ngx.header["X-Accel-Buffering"] = "no" -- behind a proxying nginx: pass events at once
    ngx.header["X-Pgspout-Stream"] = tostring(id)

    local sent = 0
    local function stats_json()
        return pgspout.registry_stats(id) or "null"
    end
    local function progress()
        return send("progress", ('{"id":%d,"sent":%d,"stats":%s}'):format(id, sent, stats_json()))
    end
    local function gone(why)
        ngx.log(ngx.INFO, "SSE flush failed (", why, "): closing registry stream ", id)
        close()
        return ngx.exit(499)
    end

    if not send("stream", pgspout.json({ id = id, n = n, rate = rate, every_ms = every * 1000,
            expected_rows = n, eta = "rows left / mean rows per second while not paused" })) then
        return gone("stream")
    end

    local fetch_at = now()
    local tick_at = fetch_at + every
    local pending -- the fetch running in a light thread
    while true do
        local t = now()
        local paused = false
        if not pending and t >= fetch_at then
            paused = state_of(pgspout.registry_stats(id)) == "paused"
            if not paused then pending = start_fetch(id, batch) end
        end
        if pending then
            if pending.sema:wait(math.max(0, tick_at - t)) then
                local res = pending.res
                pending = nil
                -- res: true, "rows", ndjson, nrows | true, "done" |
                --      true, "error", message, code | true, nil, message | false, lua error
                if res[1] and res[2] == "rows" then
                    sent = sent + res[4]
                    local fok, ferr = send("rows", json_array(res[3]))
                    if not fok then return gone(ferr) end
                    if rate > 0 then -- no catching up after a pause or a slow fetch
                        fetch_at = math.max(fetch_at, now() - 0.25) + res[4] / rate
                    end
                elseif res[1] and res[2] == "done" then
                    progress()
                    send("end", ('{"id":%d,"state":"done","sent":%d,"stats":%s}')
                        :format(id, sent, stats_json()))
                    break
                else
                    local msg = res[1] and (res[3] or "fetch failed") or tostring(res[2])
                    local ecode = res[1] and res[2] == "error" and res[4] or "einternal"
                    local js = stats_json()
                    progress()
                    if ecode == "ecancelled" then -- POST /streams/{id}/cancel
                        send("end", ('{"id":%d,"state":"cancelled","sent":%d,"stats":%s}')
                            :format(id, sent, js))
                    else
                        ngx.log(ngx.ERR, "pgspout SSE stream ", id, ": ", msg)
                        send("error", ('{"id":%d,"error":%s,"code":%s,"sent":%d,"stats":%s}')
                            :format(id, pgspout.json(msg), pgspout.json(ecode), sent, js))
                    end
                    break
                end
            end
        else -- paused (look again in 0.1 s) or throttled (until fetch_at)
            local wake = math.min(tick_at, paused and t + 0.1 or fetch_at)
            ngx.sleep(math.max(0.001, wake - t))
        end
        if now() >= tick_at then
            local fok, ferr = progress()
            if not fok then return gone(ferr) end
            tick_at = now() + every
        end
    end
    close()
end

local ACTIONS = { pause = true, resume = true, cancel = true }

local function method_not_allowed(allow)
    ngx.header["Allow"] = allow
    return answer(405, { error = "method " .. ngx.req.get_method() .. " not allowed",
                         allow = allow })
end

--- /streams/{id} (GET: stats) and /streams/{id}/{pause,resume,cancel} (POST)
function M.control()
    local sid, action = ngx.var.uri:match("^/streams/(%d+)/?(%a*)$")
    if not sid or (action ~= "" and not ACTIONS[action]) then
        return answer(404, { error = "not found: /streams/{id} or /streams/{id}/pause, " ..
                                     "/resume, /cancel", path = ngx.var.uri })
    end
    local id = #sid <= 15 and tonumber(sid) or 0
    local method = ngx.req.get_method()
    local function unknown()
        return answer(404, { error = "no registry stream with that id", id = sid })
    end

    if action == "" then
        if method ~= "GET" and method ~= "HEAD" then return method_not_allowed("GET, HEAD") end
        local js = pgspout.registry_stats(id)
        if not js then return unknown() end
        ngx.header["Content-Type"] = "application/json"
        return ngx.say(('{"id":%d,"stats":%s}'):format(id, js))
    end
    if method ~= "POST" then return method_not_allowed("POST") end
    ngx.req.discard_body()

    local ok, err, code
    if action == "cancel" then -- may wait for the server: in the pool
        local st
        st, err, code = call("cancel", id)
        ok = st == "ok"
        if st == nil then code = "einternal" end
    elseif action == "pause" then -- never block: on the loop
        ok, err, code = pgspout.registry_pause(id)
    else
        ok, err, code = pgspout.registry_resume(id)
    end
    local state = state_of(pgspout.registry_stats(id))
    if ok then
        -- a cancelled stream's handler may have closed it already (its
        -- fetch woke at once): gone from the registry then, but cancelled
        state = state or (action == "cancel" and "cancelled" or "closed")
        return answer(200, { id = id, action = action, ok = true, state = state })
    end
    if code == "enotfound" then return unknown() end
    -- estate: pause/resume/cancel of a stream that has ended, or resume of
    -- one not paused
    return answer(code == "estate" and 409 or 500,
        { id = id, action = action, ok = false, error = err, code = code, state = state })
end

-- status.html, read once from the directory of this file
local page
do
    local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
    local f = io.open(dir .. "status.html", "rb")
    if f then
        page = f:read("*a")
        f:close()
    end
end

function M.page()
    if not page then
        return answer(500, { error = "status.html not found beside pgspout_ngx_sse.lua" })
    end
    ngx.header["Content-Type"] = "text/html; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
    ngx.print(page)
end

return M
