--- TEST ONLY: the endpoint tests/lua/nginx_fault_test.py adds to the
-- example server's config (never part of bindings/lua/examples).
--
-- /t/sql?q=NAME[&n=N] runs one of the fixed statements below the example's
-- way (pgspout_ngx_query: a slot, a registry stream on the worker's pool,
-- fetched and closed in the thread pool) and answers its rows as NDJSON,
-- or the query module's JSON error. The statements leave a pooled
-- connection in every state a request could leave it in (a transaction
-- open, session settings, a role, LISTEN, a temporary table, a prepared
-- statement, an advisory lock); `check` reports that state, so that a
-- check run on the same connection after them shows whether the pool's
-- reset undid it. No SQL ever comes from the request.
local query = require "pgspout_ngx_query"

local STATEMENTS = {
    check = [[
SELECT pg_backend_pid() AS pid,
       extract(epoch FROM now())::float8 AS xact_start,
       current_setting('work_mem') AS work_mem,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('search_path') AS search_path,
       current_setting('application_name') AS application_name,
       current_user = session_user AS own_role,
       (SELECT count(*) FROM pg_listening_channels())::int AS listens,
       (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())::int AS temp_tables,
       (SELECT count(*) FROM pg_prepared_statements)::int AS prepared,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::int AS advisory]],
    begin = "BEGIN",
    begin_serializable = "BEGIN ISOLATION LEVEL SERIALIZABLE",
    set_work_mem = "SET work_mem = '1234kB'",
    set_statement_timeout = "SET statement_timeout = '1ms'",
    set_config = "SELECT set_config('search_path', 'pg_catalog', false)",
    set_role = "SET ROLE fault_role",
    listen = "LISTEN fault_chan",
    temp = "CREATE TEMP TABLE fault_tmp (x int)",
    prepare = "PREPARE fault_p AS SELECT 1",
    advisory = "SELECT pg_advisory_lock(4242)",
    small = "SELECT g FROM generate_series(1, $1::int) g",
    sleep = "SELECT pg_sleep($1::float8 / 1000) AS slept",
}

local M = {}

function M.sql()
    local name = ngx.var.arg_q
    local sql = name and STATEMENTS[name]
    if not sql then return query.error(400, { error = "unknown statement", q = name }) end
    local params
    if sql:find("$1", 1, true) then
        local n = ngx.var.arg_n
        if not n or not n:match("^%d+$") then return query.error(400, { error = "n required" }) end
        params = { n }
    end
    local body, status, err = query.run(sql, params)
    if not body then return query.error(status, err) end
    ngx.header["Content-Type"] = "application/x-ndjson"
    ngx.print(body)
end

return M
