-- The process-wide registry: open by id, fetch NDJSON chunks, control, list,
-- close, idle reaping (synchronous and by the background thread).
local H = require "helper"
local pgspout = H.pgspout
local has_cjson, cjson = pcall(require, "cjson")

-- decode NDJSON lines into a list of objects (or of raw lines without cjson)
local function lines(s, into)
    into = into or {}
    for line in s:gmatch("([^\n]*)\n") do
        into[#into + 1] = has_cjson and cjson.decode(line) or line
    end
    return into
end

local function fetch_all(id, max_rows)
    local rows, calls = {}, 0
    while true do
        local out, n_or_err, code = pgspout.registry_fetch(id, max_rows)
        if not out then
            assert.is_nil(n_or_err, code)
            break
        end
        calls = calls + 1
        local before = #rows
        lines(out, rows)
        assert.are.equal(n_or_err, #rows - before)
        if max_rows and max_rows > 0 then assert.is_true(n_or_err <= max_rows) end
    end
    return rows, calls
end

describe("registry", function()
    it("streams every row in order as NDJSON, then reports done", function()
        local id = assert(pgspout.registry_open(H.dsn,
            "SELECT g AS id, md5(g::text) AS h, NULL::int AS z FROM generate_series(1, $1::int) g",
            { 25000 }, { chunk_rows = 1000 }))
        assert.is_number(id)
        local rows = fetch_all(id)
        assert.are.equal(25000, #rows)
        if has_cjson then
            for i, r in ipairs(rows) do
                assert.are.equal(i, r.id)
                assert.are.equal(cjson.null, r.z)
            end
        end
        -- after the end: done again, not an error
        local out, err = pgspout.registry_fetch(id)
        assert.is_nil(out)
        assert.is_nil(err)
        assert.is_true(pgspout.registry_close(id))
        local _, _, code = pgspout.registry_fetch(id)
        assert.are.equal("enotfound", code)
    end)

    it("ids are unique and increasing", function()
        local a = assert(pgspout.registry_open(H.dsn, "SELECT 1"))
        local b = assert(pgspout.registry_open(H.dsn, "SELECT 1"))
        assert.is_true(b > a)
        assert.is_true(pgspout.registry_close(a))
        assert.is_true(pgspout.registry_close(b))
        local ok, _, code = pgspout.registry_close(a)
        assert.is_nil(ok)
        assert.are.equal("enotfound", code)
    end)

    it("hands out at most max_rows rows per fetch, losing none", function()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g AS id FROM generate_series(1, 5000) g",
                                                nil, { chunk_rows = 1000 }))
        local rows, calls = fetch_all(id, 333)
        assert.are.equal(5000, #rows)
        assert.is_true(calls >= math.ceil(5000 / 333))
        if has_cjson then
            for i, r in ipairs(rows) do assert.are.equal(i, r.id) end
        end
        pgspout.registry_close(id)
    end)

    it("tops a fetch up with rows already received, up to max_rows", function()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g AS id FROM generate_series(1, 5000) g",
                                                nil, { chunk_rows = 100 }))
        H.sleep(0.3)        -- let the whole result reach the socket
        local out, n = assert(pgspout.registry_fetch(id, 1000))
        assert.is_true(n > 100, "only " .. tostring(n) .. " rows: not topped up")
        assert.is_true(n <= 1000)
        local rows = lines(out)
        local rest = fetch_all(id, 1000)
        assert.are.equal(5000, #rows + #rest)
        if has_cjson then
            for i, r in ipairs(rest) do assert.are.equal(#rows + i, r.id) end
        end
        -- max_rows 0: exactly one core chunk per fetch
        local id2 = assert(pgspout.registry_open(H.dsn, "SELECT g FROM generate_series(1, 5000) g",
                                                 nil, { chunk_rows = 100 }))
        H.sleep(0.3)
        local _, n2 = assert(pgspout.registry_fetch(id2, 0))
        assert.is_true(n2 <= 100)
        pgspout.registry_close(id)
        pgspout.registry_close(id2)
    end)

    it("pauses, resumes and reports stats as JSON", function()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g FROM generate_series(1, 10000) g",
            nil, { chunk_rows = 100, label = "lua_registry", pause_timeout = "300ms" }))
        assert(pgspout.registry_fetch(id))
        assert.is_true(pgspout.registry_pause(id))
        assert.is_true(pgspout.registry_pause(id))
        local js = assert(pgspout.registry_stats(id))
        assert.matches('"state":"paused"', js, 1, true)
        if has_cjson then
            local st = cjson.decode(js)
            assert.are.equal(100, st.rows_delivered)
            assert.are.equal(1, st.pauses)
        end
        -- paused with an empty buffer: fetch waits; pause_timeout resumes it
        local t0 = H.now()
        local out = assert(pgspout.registry_fetch(id))
        assert.is_true(#out > 0)
        assert.is_true(H.now() - t0 >= 0.25)
        assert.is_true(pgspout.registry_pause(id))
        assert.is_true(pgspout.registry_resume(id))
        local rest = fetch_all(id)
        assert.are.equal(10000 - 100 - select(2, out:gsub("\n", "")), #rest)
        -- pause on a finished stream: a state error
        local ok, _, code = pgspout.registry_pause(id)
        assert.is_nil(ok)
        assert.are.equal("estate", code)
        pgspout.registry_close(id)
    end)

    it("cancels: fetch then fails with ecancelled and SQLSTATE 57014; the query is gone", function()
        local marker = H.marker("reg_cancel")
        local id = assert(pgspout.registry_open(H.dsn,
            "SELECT g, '" .. marker .. "' FROM generate_series(1, 5000000) g", nil, { chunk_rows = 100 }))
        assert(pgspout.registry_fetch(id))
        assert.are.equal(1, H.running(marker))
        assert.is_true(pgspout.registry_cancel(id))
        local out, err, code = pgspout.registry_fetch(id)
        assert.is_nil(out)
        assert.are.equal("ecancelled", code)
        assert.matches("57014", err)
        assert.are.equal(0, H.running(marker))
        assert.is_true(pgspout.registry_close(id))
    end)

    it("close cancels a running query and gives its connection back to the pool", function()
        local app = H.marker("reg_close")
        local marker = H.marker("reg_close_q")
        local id = assert(pgspout.registry_open(H.dsn,
            "SELECT g, '" .. marker .. "' FROM generate_series(1, 5000000) g",
            nil, { chunk_rows = 100, application_name = app }))
        assert(pgspout.registry_fetch(id))
        assert.are.equal(1, H.backends(app))
        assert.is_true(pgspout.registry_close(id))
        assert.are.equal(0, H.wait_until(function() return H.running(marker) == 0 and 0 end, H.SERVER_SETTLE))
        -- pooled: the backend stays, idle, for the next stream
        assert.are.equal(1, H.backends(app))
        local p = assert(pgspout.pool(H.dsn, { application_name = app }))
        assert.are.equal(0, p:stats().in_use)
        assert.are.equal(1, p:stats().idle)
    end)

    it("close with pool=off closes the stream's own connection", function()
        local app = H.marker("reg_close_off")
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g FROM generate_series(1, 5000000) g",
                                                nil, { chunk_rows = 100, application_name = app,
                                                       pool = "off" }))
        assert(pgspout.registry_fetch(id))
        assert.are.equal(1, H.backends(app))
        assert.is_true(pgspout.registry_close(id))
        assert.are.equal(0, H.wait_until(function() return H.backends(app) == 0 and 0 end, H.SERVER_SETTLE))
    end)

    it("lists streams with id, sql and stats", function()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT 'listed\t' AS \"x\"\"y\" FROM generate_series(1, 3)"))
        local js = pgspout.registry_list()
        assert.is_string(js)
        assert.matches('"id":' .. id .. ',', js, 1, true)
        if has_cjson then
            local list = cjson.decode(js)
            local found
            for _, e in ipairs(list) do
                if e.id == id then found = e end
            end
            assert.is_table(found)
            assert.are.equal("SELECT 'listed\t' AS \"x\"\"y\" FROM generate_series(1, 3)", found.sql)
            assert.are.equal("running", found.stats.state)
            assert.is_number(found.idle_ms)
        end
        pgspout.registry_close(id)
        assert.is_nil(pgspout.registry_list():find('"id":' .. id .. ',', 1, true))
    end)

    it("reaps streams idle past idle_timeout (registry_reap), cancelling the query", function()
        local marker = H.marker("reap_sync")
        local id = assert(pgspout.registry_open(H.dsn,
            "SELECT g, '" .. marker .. "' FROM generate_series(1, 5000000) g", nil,
            { chunk_rows = 100, idle_timeout = "1500ms" }))
        local keep = assert(pgspout.registry_open(H.dsn, "SELECT 1", nil, { idle_timeout = "0" }))
        assert(pgspout.registry_fetch(id))
        assert.are.equal(1, H.running(marker))
        -- used recently: not reaped
        assert.are.equal(0, pgspout.registry_reap())
        H.sleep(0.6)
        assert(pgspout.registry_fetch(id))        -- a fetch counts as use
        H.sleep(0.6)
        pgspout.registry_reap()
        assert.is_truthy(pgspout.registry_stats(id))
        H.sleep(1.2)
        -- reaped by now (by this call or by the background thread)
        pgspout.registry_reap()
        local _, _, code = pgspout.registry_fetch(id)
        assert.are.equal("enotfound", code)
        assert.are.equal(0, H.wait_until(function() return H.running(marker) == 0 and 0 end, H.SERVER_SETTLE))
        -- idle_timeout = 0: never reaped
        assert.is_truthy(pgspout.registry_stats(keep))
        assert.is_true(pgspout.registry_close(keep))
    end)

    it("the background thread reaps without anyone calling registry_reap", function()
        local app = H.marker("reap_bg")
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g FROM generate_series(1, 5000000) g",
            nil, { chunk_rows = 100, idle_timeout = "1s", application_name = app }))
        assert(pgspout.registry_fetch(id))
        assert.are.equal(1, H.backends(app))
        local p = assert(pgspout.pool(H.dsn, { application_name = app }))
        assert.are.equal(1, p:stats().in_use)
        -- idle 1 s, reaper runs once a second: gone within ~2 s, and its
        -- connection back in the pool
        assert.are.equal(0, H.wait_until(function() return p:stats().in_use == 0 and 0 end, H.SERVER_SETTLE))
        local _, _, code = pgspout.registry_fetch(id)
        assert.are.equal("enotfound", code)
        assert.are.equal(1, p:stats().idle)
    end)

    it("counts registry rows in the process-wide metrics", function()
        local function rows_total()
            local text = pgspout.metrics_text()
            return tonumber(text:match('pgspout_rows_total{label="lua_reg_metrics"} (%d+)')) or 0
        end
        local before = rows_total()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g FROM generate_series(1, 4321) g",
                                                nil, { label = "lua_reg_metrics" }))
        assert.are.equal(4321, #fetch_all(id))
        pgspout.registry_close(id)
        assert.are.equal(before + 4321, rows_total())
    end)
end)
