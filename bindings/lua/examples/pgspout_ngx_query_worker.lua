--- pgspout_ngx_query's task in nginx's thread pool: a whole small query -
-- open on the worker process's pool, fetch every row as NDJSON, close - in
-- one ngx.run_worker_thread call instead of one per step, on the same
-- functions (and so the same pool) as the example's streams
-- (pgspout_ngx_worker). Returns the log records of the calls first, as
-- those do.
local worker = require "pgspout_ngx_worker"

local M = {}

local function add(all, recs)
    for i = 1, #recs do all[#all + 1] = recs[i] end
end

--- query(dsn, sql, params, opts, fetch_rows) -> log, "ok", ndjson | log, "error", message, code
function M.query(dsn, sql, params, opts, fetch_rows)
    local logs = {}
    local recs, st, id, code = worker.open(dsn, sql, params, opts)
    add(logs, recs)
    if st ~= "ok" then return logs, "error", id, code end
    local out = {}
    local err
    while true do
        local r, fst, rows = worker.fetch(id, fetch_rows)
        add(logs, r)
        if fst == "done" then break end
        if fst ~= "rows" then err = rows break end
        out[#out + 1] = rows
    end
    add(logs, (worker.close(id)))
    if err then return logs, "error", err end
    return logs, "ok", table.concat(out)
end

return M
