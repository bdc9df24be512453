--- The benchmark's one-row endpoint, /row?id=N, added to the example server
-- (bindings/lua/examples) by bench/openresty/measure.py.
--
-- It is the example's way to run a small query (pgspout_ngx_query): a
-- connection slot, then one task in nginx's thread pool that opens a
-- registry stream on the worker process's pool (or on a connection of its
-- own with PGSPOUT_POOL=off), fetches the row and closes the stream - so
-- what it measures is what an application built on the example pays per
-- request.
local query = require "pgspout_ngx_query"

local SQL = "SELECT id, name, amount FROM typed WHERE id = $1"
local OPTS = { chunk_rows = 100, max_rows = 10, max_memory = "1MB", label = "row", idle_timeout = "30s" }

local M = {}

function M.row()
    local raw = ngx.var.arg_id
    if not raw or not raw:match("^%d+$") or #raw > 9 then
        return query.error(400, { error = "id must be a positive integer", param = "id", value = raw })
    end
    local body, status, err = query.run(SQL, { raw }, OPTS)
    if not body then return query.error(status, err) end
    if body == "" then return query.error(404, { error = "no such id", id = tonumber(raw) }) end
    ngx.header["Content-Type"] = "application/x-ndjson"
    ngx.print(body)
end

return M
