-- Streaming: completeness and order, pause/resume, cancel, stats.
local H = require "helper"
local pgspout = H.pgspout

describe("streams", function()
    local conn
    before_each(function() conn = assert(pgspout.connect(H.dsn)) end)
    after_each(function() conn:close() end)

    it("streams 1M rows in order; the checksum equals the server's md5(string_agg)", function()
        local sql = "SELECT g, md5(g::text) AS h, g::int8 * 7 AS x FROM generate_series(1, 1000000) g"
        local md5 = H.md5()
        local s = assert(conn:stream(sql, nil, { chunk_rows = 5000, max_memory = "32MB" }))
        local n, expect, sep = 0, 1, ""
        local ok_order = true
        for row in s:rows() do
            n = n + 1
            if row[1] ~= expect then ok_order = false end
            expect = expect + 1
            if md5 then
                md5:update(sep .. row[1] .. "|" .. row[2] .. "|" .. row[3])
                sep = "\n"
            end
        end
        assert.is_true(ok_order, "rows out of order")
        assert.are.equal(1000000, n)
        local st = s:stats()
        assert.are.equal("done", st.state)
        assert.are.equal(1000000, st.rows_delivered)
        -- bounded memory: never more than the budget, whatever the result size
        assert.is_true(st.peak_buffered_bytes <= 32 * 1024 * 1024, st.peak_buffered_bytes)
        if md5 then
            local server = H.scalar([[SELECT md5(string_agg(g || '|' || md5(g::text) || '|' || g::int8 * 7,
                                                           E'\n' ORDER BY g))
                                        FROM generate_series(1, 1000000) g]])
            assert.are.equal(server, md5:hex())
        else
            pending("no FFI/libcrypto: checksum not compared")
        end
    end)

    it("reports the command tag; a COMMIT of a failed transaction reads ROLLBACK", function()
        local function run(sql)
            local s = assert(conn:stream(sql))
            for _ in s:rows() do end
            local tag = s:command_tag()
            s:close()
            assert.are.equal(tag, s:command_tag()) -- kept after close
            return tag
        end
        local s0 = assert(conn:stream("SELECT generate_series(1, 1000000)", nil, { chunk_rows = 10 }))
        assert.are.equal("", s0:command_tag()) -- not complete yet
        s0:close()
        assert.are.equal("SELECT 3", (run("SELECT generate_series(1, 3)")))
        assert.are.equal("BEGIN", (run("BEGIN")))
        assert.are.equal("SAVEPOINT", (run("SAVEPOINT a")))
        local failed, err = conn:stream("SELECT 1 / 0") -- fails at open
        assert.is_nil(failed)
        assert.matches("22012", err)
        assert.are.equal("ROLLBACK", (run("COMMIT")))
        assert.is_true(conn:ok())
    end)

    it("gives chunks with s:chunk() and nil at the end", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 2500) g", nil, { chunk_rows = 1000 }))
        local total, chunks = 0, 0
        while true do
            local c, err = s:chunk()
            assert.is_nil(err)
            if not c then break end
            chunks = chunks + 1
            for _, r in ipairs(c) do
                total = total + 1
                assert.are.equal(total, r[1])
            end
        end
        assert.are.equal(2500, total)
        assert.is_true(chunks >= 3)
        assert.is_nil(s:chunk())         -- still the end
    end)

    it("pauses and resumes; buffered rows stay readable while paused", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 20000) g", nil, { chunk_rows = 100 }))
        local iter = s:rows()
        assert.are.equal(1, iter()[1])
        assert.is_true(s:pause())
        assert.is_true(s:pause())                        -- idempotent
        assert.are.equal("paused", s:state())
        local received = s:stats().rows_received
        -- the rows of the chunk already fetched stay readable while paused,
        -- and nothing more is read from the server
        local n = 1
        for _ = 2, 50 do
            n = n + 1
            assert.are.equal(n, iter()[1])
        end
        assert.are.equal(received, s:stats().rows_received)
        assert.is_true(s:resume())
        assert.is_true(s:resume())                       -- idempotent
        assert.are.equal("running", s:state())
        for row in iter do
            n = n + 1
            assert.are.equal(n, row[1])
        end
        assert.are.equal(20000, n)
        local st = s:stats()
        assert.are.equal(1, st.pauses)
        assert.is_true(st.paused_time > 0)
        -- pause/resume on a finished stream: a state error, not a crash
        local ok, err, code = s:pause()
        assert.is_nil(ok)
        assert.are.equal("estate", code)
        assert.matches("done", err)
    end)

    it("pause_timeout with on_pause_timeout=resume resumes by itself", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 3000) g", nil,
            { chunk_rows = 100, pause_timeout = "300ms", on_pause_timeout = "resume" }))
        assert(s:chunk())
        s:pause()
        local t0 = H.now()
        local n = 0
        for _ in s:rows() do n = n + 1 end      -- blocks until the pause times out
        local waited = H.now() - t0
        assert.is_true(n > 0)
        assert.is_true(waited >= 0.25, "resumed too early: " .. waited)
        assert.is_true(waited < 5, "resumed too late: " .. waited)
        assert.are.equal("done", s:state())
    end)

    it("cancels a running query; the connection is usable afterwards", function()
        local marker = H.marker("cancel")
        local s = assert(conn:stream("SELECT g, '" .. marker .. "' FROM generate_series(1, 5000000) g",
                                     nil, { chunk_rows = 100 }))
        assert(s:chunk())
        assert.are.equal(1, H.running(marker))
        assert.is_true(s:cancel())
        local ok, err = pcall(function() for _ in s:rows() do end end)
        assert.is_false(ok)
        assert.are.equal("cancelled", s:state())
        assert.matches("ecancelled", err)
        assert.matches("57014", err)
        assert.are.equal(0, H.running(marker))
        -- a new stream on the same connection (the cancelled one closes itself)
        local rows = H.query("SELECT 42", nil, nil, conn)
        assert.are.equal(42, rows[1][1])
        assert.is_true(conn:ok())
    end)

    it("refuses a second stream while one runs, and allows it once closed", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 100000) g", nil, { chunk_rows = 100 }))
        assert(s:chunk())
        local s2, err, code = conn:stream("SELECT 1")
        assert.is_nil(s2)
        assert.are.equal("ebusy", code)
        assert.is_string(err)
        s:close()
        assert.are.equal("closed", s:state())
        assert.are.same({ { 1 } }, H.query("SELECT 1", nil, nil, conn))
    end)

    it("reports stats as a table, and a final snapshot after close", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 10) g", nil,
                                     { expected_rows = 10, label = "lua_stats" }))
        for _ in s:rows() do end
        local st = s:stats()
        assert.are.equal("done", st.state)
        assert.are.equal(10, st.rows_delivered)
        assert.are.equal(10, st.expected_rows)
        assert.are.equal(1, st.progress)
        assert.is_number(st.elapsed)
        assert.is_number(st.time_to_first_row)
        s:close()
        local fin = s:stats()
        assert.are.equal("closed", fin.state)
        assert.are.equal(10, fin.rows_delivered)
        assert.matches('pgspout_rows_total{label="lua_stats"}', pgspout.metrics_text(), 1, true)
    end)

    it("raises mid-loop on a server error with its SQLSTATE, never a silent end", function()
        -- division by zero at row 5000, after rows were delivered
        local s = assert(conn:stream("SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g",
                                     nil, { chunk_rows = 100 }))
        local n = 0
        local ok, err = pcall(function() for _ in s:rows() do n = n + 1 end end)
        assert.is_false(ok)
        assert.matches("22012", err)
        assert.matches("esql", err)
        assert.is_true(n < 5000)
        assert.are.equal("failed", s:state())
        local msg, sqlstate, code = s:error()
        assert.matches("division by zero", msg)
        assert.are.equal("22012", sqlstate)
        assert.are.equal("esql", code)
        -- the loop keeps raising, it never turns into a normal end
        assert.has_error(function() for _ in s:rows() do end end)
        -- and s:chunk() returns the error instead
        local c, cerr, ccode = s:chunk()
        assert.is_nil(c)
        assert.matches("22012", cerr)
        assert.are.equal("esql", ccode)
    end)

    it("returns nil, err for an SQL error at open", function()
        local s, err, code = conn:stream("SELECT * FROM no_such_table_xyz")
        assert.is_nil(s)
        assert.are.equal("esql", code)
        assert.matches("42P01", err)
        assert.matches("no_such_table_xyz", err)
        assert.are.same({ { 1 } }, H.query("SELECT 1", nil, nil, conn))
    end)
end)

-- What every language shares (README, "What holds in every language"): after
-- cancel or close the next row request reports it, rows_delivered counts the
-- rows handed out, objects close in any order.
describe("stream semantics shared with C and Python", function()
    local conn
    before_each(function() conn = assert(pgspout.connect(H.dsn)) end)
    after_each(function() conn:close() end)

    local BIG = "SELECT g FROM generate_series(1, 1000000) g"

    -- an iterator that has handed out 10 rows of a 100-row chunk
    local function ten(opts)
        local s = assert(conn:stream(BIG, nil, opts or { chunk_rows = 100 }))
        local iter = s:rows()
        for i = 1, 10 do assert.are.equal(i, iter()[1]) end
        return s, iter
    end

    it("after s:cancel(), no buffered row: the next one raises ecancelled", function()
        local s, iter = ten({ chunk_rows = 100, label = "lua_handout" })
        assert.is_true(s:cancel())
        local ok, err = pcall(iter)
        assert.is_false(ok)
        assert.matches("^pgspout: ecancelled: ", err)
        assert.matches("57014", err)
        assert.are.equal(10, s:stats().rows_delivered)
        s:close()
        -- the metric counts what the user received too
        assert.matches('pgspout_rows_total{label="lua_handout"} 10\n', pgspout.metrics_text(), 1, true)
    end)

    it("after s:close(), no buffered row: the next one raises estate", function()
        local s, iter = ten()
        s:close()
        local ok, err = pcall(iter)
        assert.is_false(ok)
        assert.are.equal("pgspout: estate: stream is closed", err)
        assert.are.equal(10, s:stats().rows_delivered)
    end)

    it("after conn:close(), the next row raises estate: the stream's connection was closed", function()
        local s, iter = ten()
        conn:close()
        local ok, err = pcall(iter)
        assert.is_false(ok)
        assert.are.equal("pgspout: estate: the stream's connection was closed", err)
        local c, cerr, code = s:chunk()
        assert.is_nil(c)
        assert.are.equal("estate", code)
        assert.are.equal("the stream's connection was closed", cerr)
        assert.are.equal("closed", s:state())
        assert.are.equal(10, s:stats().rows_delivered)
        s:close()
    end)

    it("s:chunk() after rows() hands out the rest of the chunk, once", function()
        local s, iter = ten()
        local rest = assert(s:chunk())
        assert.are.equal(90, #rest)
        assert.are.equal(11, rest[1][1])
        assert.are.equal(101, iter()[1])
        assert.are.equal(101, s:stats().rows_delivered)
        s:close()
    end)

    it("conn:cancel() cancels what runs on the connection", function()
        local s = assert(conn:stream("SELECT g, pg_sleep(0.01) FROM generate_series(1, 100000) g",
                                     nil, { chunk_rows = 1 }))
        assert(s:chunk())
        assert.is_true(conn:cancel())
        local ok, err = pcall(function() for _ in s:rows() do end end)
        assert.is_false(ok)
        assert.matches("57014", err)
        s:close()
        assert.are.same({ { 3 } }, H.query("SELECT 3", nil, nil, conn))
        local c2 = assert(pgspout.connect(H.dsn))
        c2:close()
        local r, cerr, code = c2:cancel()
        assert.is_nil(r)
        assert.are.equal("estate", code)
        assert.matches("closed", cerr)
    end)

    it("rows = tuple | dict | json shapes rows; rows(mode) overrides it", function()
        local sql = "SELECT 1 AS a, 'x' AS b"
        local function all(opts, mode)
            local rows = {}
            for r in assert(conn:stream(sql, nil, opts)):rows(mode) do rows[#rows + 1] = r end
            return rows
        end
        assert.are.same({ { 1, "x" } }, all({ rows = "tuple" }))
        assert.are.same({ { a = 1, b = "x" } }, all({ rows = "dict" }))
        assert.are.same({ '{"a":1,"b":"x"}' }, all({ rows = "json" }))
        assert.are.same({ { 1, "x" } }, all({ rows = "dict" }, "array"))
        local s, err, code = conn:stream(sql, nil, { rows = "map" })
        assert.is_nil(s)
        assert.are.equal("evalue", code)
        assert.matches("rows", err)
    end)

    it("stats: every field of the core's table, -1 where unknown", function()
        local s = assert(conn:stream("SELECT 1"))
        local st = s:stats()
        for _, k in ipairs({ "state", "chunk_rows", "rows_delivered", "rows_received", "rows_filtered",
                             "bytes_received", "chunks", "buffered_rows", "buffered_bytes",
                             "peak_buffered_bytes", "pauses", "time_to_first_row", "elapsed",
                             "paused_time", "rows_per_sec", "bytes_per_sec", "expected_rows",
                             "progress", "eta" }) do
            assert.is_not_nil(st[k], k)
        end
        assert.are.equal(-1, st.progress)
        assert.are.equal(-1, st.eta)
        s:close()
    end)

    it("a connection collected while its stream runs closes when the stream ends", function()
        local app = H.marker("gc_release")
        local n = 0
        for _ in assert(assert(pgspout.connect(H.dsn, { application_name = app }))
                            :stream("SELECT g FROM generate_series(1, 3000) g", nil, { chunk_rows = 100 }))
                     :rows() do
            n = n + 1
            if n % 500 == 0 then
                collectgarbage()
                collectgarbage()
            end
        end
        assert.are.equal(3000, n)
        collectgarbage()
        collectgarbage()
        assert.are.equal(0, H.wait_until(function() return H.backends(app) == 0 and 0 end, 5))
    end)
end)
