-- Bad input: wrong Lua types raise (like the standard library); everything
-- the library reports comes back as nil, message, code. Nothing crashes and
-- the next operation works.
local H = require "helper"
local pgspout = H.pgspout
local core = pgspout.core
-- the generated methods, to call them with a wrong self
local conn_m, stream_m = core.conn_class[".fn"], core.stream_class[".fn"]

describe("bad input", function()
    local conn
    before_each(function() conn = assert(pgspout.connect(H.dsn)) end)
    after_each(function()
        assert.are.same({ { 1 } }, H.query("SELECT 1", nil, nil, conn))
        conn:close()
    end)

    it("raises on wrong argument types", function()
        local bad = {
            function() pgspout.connect({}) end,
            function() pgspout.connect(H.dsn, "opts") end,
            function() conn:stream() end,
            function() conn:stream({}) end,
            function() conn:stream("SELECT 1", "params") end,
            function() conn:stream("SELECT 1", nil, 5) end,
            function() conn:stream("SELECT $1", { { a = 1 } }) end,   -- a map is not an array
            function() conn:stream("SELECT $1", { { { 1 }, 2 } }) end,  -- ragged
            function() conn:stream("SELECT $1", { function() end }) end,
            function() conn:stream("SELECT 1", nil, { chunk_rows = {} }) end,
            function() conn:stream("SELECT 1", nil, { "positional" }) end,
            function() conn:stream("SELECT 1", nil, { [true] = 1 }) end,
            function() conn:stream("SELECT 1", { n = -1 }) end,
            function() conn:stream("SELECT 1", { n = 1.5 }) end,
            function() conn:stream("SELECT 1", { n = 70000 }) end,
            function() conn_m.open("not a conn", "SELECT 1") end,
            function() stream_m.pause(conn) end,                     -- conn is not a stream
            function() conn_m.close(io.stdout) end,                  -- a foreign userdata
            function() local s = assert(conn:stream("SELECT 1")); s:rows("bogus") end,
            function() local s = assert(conn:stream("SELECT 1")); s:chunk("bogus") end,
            function() stream_m.chunk(assert(conn:stream("SELECT 1")), 7) end,
            function() pgspout.registry_fetch("abc") end,
            function() pgspout.registry_fetch(-1) end,
            function() pgspout.registry_fetch(1.5) end,
            function() pgspout.registry_close({}) end,
            function() pgspout.registry_open(H.dsn, "SELECT 1", "params") end,
        }
        for i, f in ipairs(bad) do
            local ok, err = pcall(f)
            assert.is_false(ok, "case " .. i .. " did not raise")
            assert.is_string(err, "case " .. i)
            -- a stream the failing case opened must not block the next one
            collectgarbage()
            collectgarbage()
        end
    end)

    it("returns eoption for an unknown option", function()
        local s, err, code = conn:stream("SELECT 1", nil, { no_such_option = 1 })
        assert.is_nil(s)
        assert.are.equal("eoption", code)
        assert.matches("no_such_option", err)
    end)

    it("returns evalue for malformed values, naming key and value", function()
        for key, val in pairs({ max_memory = "12XB", timeout = "soon", chunk_rows = -5,
                                metrics = "maybe", rows = "csv",
                                max_rows = "1e99999", label = "bad label!" }) do
            local s, err, code = conn:stream("SELECT 1", nil, { [key] = val })
            assert.is_nil(s, key)
            assert.are.equal("evalue", code, key)
            assert.matches(key, err, 1, true)
        end
    end)

    it("accepts numbers and booleans as option values", function()
        local s = assert(conn:stream("SELECT 1", nil,
            { chunk_rows = 10, max_memory = 1048576, metrics = false, adaptive_chunking = true,
              memory_warn = 0.5 }))
        for _ in s:rows() do end
    end)

    it("refuses rows of a stream opened with the arrow option, saying why", function()
        -- option arrow: the rows go to the C library's Arrow exporter only
        -- (they may be binary), never to a Lua table
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 10) g", nil,
                                     { arrow = true }))
        local rows, err, code = s:chunk()
        assert.is_nil(rows)
        assert.are.equal("estate", code)
        assert.matches("option arrow", err, 1, true)
        local ok, raised = pcall(function() for _ in s:rows() do end end)
        assert.is_false(ok)
        assert.matches("pgspout: estate: ", raised, 1, true)
        s:close()
    end)

    it("reports a wrong parameter count as an SQL error", function()
        local s, err, code = conn:stream("SELECT $1::int, $2::int", { 1 })
        assert.is_nil(s)
        assert.are.equal("esql", code)
        assert.matches("SQLSTATE 08P01", err)
    end)

    it("reports a bad parameter value as an SQL error", function()
        local s, err, code = conn:stream("SELECT $1::int", { "not a number" })
        assert.is_nil(s)
        assert.are.equal("esql", code)
        assert.matches("22P02", err)
    end)

    it("rejects invalid UTF-8 in parameters with an SQL error", function()
        local s, err, code = conn:stream("SELECT $1::text", { "\255\254" })
        assert.is_nil(s)
        assert.are.equal("esql", code)
        assert.matches("22021", err)
    end)

    it("handles a huge parameter", function()
        local big = string.rep("x", 8 * 1024 * 1024)
        assert.are.same({ { 8 * 1024 * 1024 } }, H.query("SELECT length($1)", { big }, nil, conn))
    end)

    it("returns estate on use after close, and close is idempotent", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 10) g"))
        s:close()
        s:close()
        assert.are.equal("closed", s:state())
        for _, m in ipairs({ "pause", "resume", "cancel", "columns", "chunk" }) do
            local r, err, code = s[m](s)
            assert.is_nil(r, m)
            assert.are.equal("estate", code, m)
            assert.matches("closed", err, 1, true)
        end
        local ok, err = pcall(function() for _ in s:rows() do end end)
        assert.is_false(ok)
        assert.matches("closed", err)

        local c2 = assert(pgspout.connect(H.dsn))
        c2:close()
        c2:close()
        assert.is_false(c2:ok())
        local s2, err2, code2 = c2:stream("SELECT 1")
        assert.is_nil(s2)
        assert.are.equal("estate", code2)
        assert.matches("closed", err2)
    end)

    it("closing the connection first ends its stream cleanly", function()
        local c2 = assert(pgspout.connect(H.dsn))
        local s = assert(c2:stream("SELECT g FROM generate_series(1, 1000000) g", nil, { chunk_rows = 100 }))
        assert(s:chunk())
        c2:close()
        assert.are.equal("closed", s:state())
        local r, _, code = s:chunk()
        assert.is_nil(r)
        assert.are.equal("estate", code)
        s:close()
    end)

    it("returns econnect for a bad DSN, without leaking the password", function()
        local c, err, code = pgspout.connect("postgresql://someone:s3cretpw@127.0.0.1:1/db?connect_timeout=2")
        assert.is_nil(c)
        assert.are.equal("econnect", code)
        assert.is_string(err)
        assert.is_nil(err:find("s3cretpw", 1, true))
        local c2, err2, code2 = pgspout.connect("this is not a dsn")
        assert.is_nil(c2)
        assert.is_string(err2)
        assert.is_truthy(code2 == "econnect" or code2 == "evalue")
    end)

    it("registry: unknown ids give enotfound", function()
        local r, err, code = pgspout.registry_fetch(987654321)
        assert.is_nil(r)
        assert.are.equal("enotfound", code)
        assert.is_string(err)
        for _, f in ipairs({ "registry_pause", "registry_resume", "registry_cancel", "registry_close",
                             "registry_stats" }) do
            local ok, _, c = pgspout[f](987654321)
            assert.is_nil(ok, f)
            assert.are.equal("enotfound", c, f)
        end
    end)

    it("registry: bad options and SQL errors come back as nil, err", function()
        local id, err, code = pgspout.registry_open(H.dsn, "SELECT 1", nil, { nope = 1 })
        assert.is_nil(id)
        assert.are.equal("eoption", code)
        assert.matches("nope", err)
        id, err, code = pgspout.registry_open(H.dsn, "SELECT * FROM no_such_table_q")
        assert.is_nil(id)
        assert.are.equal("esql", code)
        assert.matches("42P01", err)
        id, err, code = pgspout.registry_open("host=127.0.0.1 port=1 connect_timeout=2", "SELECT 1")
        assert.is_nil(id)
        assert.are.equal("econnect", code)
        assert.matches("connect", err)
    end)

    -- A Lua string may hold NUL bytes; the C API takes NUL-terminated text.
    -- Cutting at the NUL would run or send something other than what the
    -- caller wrote ("SELECT 1\0; DROP ..." runs "SELECT 1", a parameter
    -- "a\0b" is sent as "a"), so every string argument with a NUL raises
    -- "pgspout: einval: <argument> contains a NUL byte" before anything
    -- reaches the server. There is no binary parameter path: bytea goes as
    -- text ('\x...' hex).
    describe("embedded NUL", function()
        local tbl = string.format("pgspout_test_nul_%d_%d", os.time(), math.random(1e9))
        local ins = "INSERT INTO " .. tbl .. " VALUES ($1) RETURNING 1"
        setup(function()
            H.query("CREATE TABLE " .. tbl .. " (v text)")
        end)
        teardown(function()
            H.query("DROP TABLE IF EXISTS " .. tbl)
        end)
        before_each(function()
            H.query("TRUNCATE " .. tbl)
        end)

        local function inserted()
            return H.scalar("SELECT count(*)::int FROM " .. tbl)
        end

        -- { what the message names, call }: each must raise and run nothing
        local mark = H.marker("nul_sql")
        local app = H.marker("nul_dsn")
        local cases = {
            -- conn:stream: SQL, parameters, option names and values
            { "sql", function()
                conn:stream("INSERT INTO " .. tbl .. " VALUES ('x') RETURNING 1\0; SELECT pg_sleep(100) -- " .. mark)
            end },
            { "sql", function() conn:stream("\0") end },
            { "sql", function()
                conn:stream("INSERT INTO " .. tbl .. " VALUES ('x') RETURNING 1\0", nil, { chunk_rows = 1 })
            end },
            { "parameter #1", function() conn:stream(ins, { "a\0b" }) end },
            { "parameter #1", function() conn:stream(ins, { "trailing\0" }) end },
            { "parameter #3", function()
                conn:stream("INSERT INTO " .. tbl .. " SELECT $1::text || $2::text || $3::text RETURNING 1",
                            { "a", 2, "\0", n = 3 })
            end },
            { "option name", function() conn:stream(ins, { "x" }, { ["chunk_rows\0junk"] = 5 }) end },
            { "value of option 'label'", function()
                conn:stream(ins, { "x" }, { label = "ok\0 bad label!" })
            end },
            { "value of option 'max_memory'", function()
                conn:stream(ins, { "x" }, { max_memory = "64MB\0x" })
            end },
            -- pgspout.connect: DSN, option names and values
            { "dsn", function() pgspout.connect(H.dsn .. " application_name=" .. app .. "\0x") end },
            { "dsn", function() pgspout.connect("\0" .. H.dsn) end },
            { "value of option 'application_name'", function()
                pgspout.connect(H.dsn, { application_name = app .. "\0x" })
            end },
            { "option name", function() pgspout.connect(H.dsn, { ["application_name\0"] = app }) end },
            -- registry_open: DSN, SQL, parameters, option names and values
            { "dsn", function() pgspout.registry_open(H.dsn .. "\0 port=1", ins, { "x" }) end },
            { "sql", function()
                pgspout.registry_open(H.dsn, "INSERT INTO " .. tbl .. " VALUES ('x') RETURNING 1\0 x")
            end },
            { "parameter #1", function() pgspout.registry_open(H.dsn, ins, { "a\0b" }) end },
            { "option name", function()
                pgspout.registry_open(H.dsn, ins, { "x" }, { ["idle_timeout\0"] = 0 })
            end },
            { "value of option 'label'", function()
                pgspout.registry_open(H.dsn, ins, { "x" }, { label = "ok\0!" })
            end },
        }
        local function registered()
            return select(2, assert(pgspout.registry_list()):gsub('"id":', ""))
        end
        for i, case in ipairs(cases) do
            local what, f = case[1], case[2]
            it(string.format("raises on a NUL in the %s (case %d)", what, i), function()
                local before = registered()
                local ok, err = pcall(f)
                assert.is_false(ok, "did not raise")
                assert.are.equal("pgspout: einval: " .. what .. " contains a NUL byte", err)
                -- nothing ran on the server, nothing was registered or left running
                assert.are.equal(0, inserted(), "something ran on the server")
                assert.are.equal(before, registered())
                assert.are.equal(0, H.running(mark))
                assert.are.equal(0, H.backends(app))
            end)
        end

        -- Numbers may be passed as numeric strings; PUC Lua 5.1 converts them
        -- with strtod on the C string, so "1\0junk" read as 1 and e.g.
        -- registry_close("1\0junk") closed stream 1.
        it("in a numeric string: registry ids, max_rows, the chunk mode", function()
            local id = assert(pgspout.registry_open(H.dsn, "SELECT g FROM generate_series(1, 3) g",
                                                    nil, { chunk_rows = 1 }))
            local sid = tostring(id)
            local calls = {
                { "id", function() pgspout.registry_close(sid .. "\0junk") end },
                { "id", function() pgspout.registry_cancel(sid .. "\0") end },
                { "id", function() pgspout.registry_pause(sid .. "\0") end },
                { "id", function() pgspout.registry_resume(sid .. "\0") end },
                { "id", function() pgspout.registry_stats(sid .. "\0") end },
                { "id", function() pgspout.registry_fetch(sid .. "\0x") end },
                { "max_rows", function() pgspout.registry_fetch(id, "1\0x") end },
            }
            for _, c in ipairs(calls) do
                local ok, err = pcall(c[2])
                assert.is_false(ok, c[1])
                assert.are.equal("pgspout: einval: " .. c[1] .. " contains a NUL byte", err)
            end
            -- the stream was not touched: every row is still there
            local out, n = assert(pgspout.registry_fetch(id, 10))
            while n < 3 do
                local more, m = assert(pgspout.registry_fetch(id, 10))
                out, n = out .. more, n + m
            end
            assert.are.equal('{"g":1}\n{"g":2}\n{"g":3}\n', out)
            assert.is_nil(pgspout.registry_fetch(id))
            assert(pgspout.registry_close(id))

            local s = assert(conn:stream("SELECT 1"))
            local ok, err = pcall(stream_m.chunk, s, "1\0x", 0)
            assert.is_false(ok)
            assert.are.equal("pgspout: einval: mode contains a NUL byte", err)
            assert.are.same({ { 1 } }, stream_m.chunk(s, "0", 0))  -- numeric strings still work
            s:close()
        end)

        it("still sends numbers, booleans, NULLs and NUL-free strings as before", function()
            local s = assert(conn:stream(
                "INSERT INTO " .. tbl .. " VALUES ($1), ($2), ($3), ($4), ($5), ($6) RETURNING v",
                { "a b", 42, 1.5, true, pgspout.null, nil, n = 6 }, { label = "nul_ok" }))
            local got = {}
            for row in s:rows() do got[#got + 1] = row[1] end
            s:close()
            assert.are.same({ "a b", "42", "1.5", "true", pgspout.null, pgspout.null }, got)
            -- a NUL-free string of a NUL byte's escape is fine: bytea as hex text
            assert.are.same({ { "\\x00" } }, H.query("SELECT $1::bytea::text", { "\\x00" }, nil, conn))
            local id = assert(pgspout.registry_open(H.dsn, "SELECT $1::text, $2::int",
                                                    { "reg", 7 }, { label = "nul_ok" }))
            local out = assert(pgspout.registry_fetch(id))
            assert.matches('"reg"', out, 1, true)
            assert(pgspout.registry_close(id))
        end)
    end)
end)
