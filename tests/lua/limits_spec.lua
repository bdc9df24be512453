-- Each limit fails with its own code and a message naming the limit; the
-- error is raised from the rows() loop (or returned by conn:stream when it
-- happens before the first row), and the connection stays usable.
local H = require "helper"
local pgspout = H.pgspout

-- run a loop over s:rows(); returns rows seen and the raised error
local function drain(s)
    local n = 0
    local ok, err = pcall(function() for _ in s:rows() do n = n + 1 end end)
    return n, (not ok) and err or nil
end

describe("limits", function()
    local conn
    before_each(function() conn = assert(pgspout.connect(H.dsn)) end)
    after_each(function()
        -- whatever happened, the connection runs the next query
        assert.are.same({ { 1 } }, H.query("SELECT 1", nil, nil, conn))
        conn:close()
    end)

    it("max_memory -> ememory, naming the limit", function()
        -- chunks shrink to fit the budget; a row that alone exceeds it fails
        local s, err, code = conn:stream("SELECT repeat('x', 10 * g) FROM generate_series(1, 10000) g",
                                         nil, { max_memory = "64kB", chunk_rows = 1000 })
        local n
        if s then
            n, err = drain(s)
            assert.is_string(err)
            assert.matches("ememory", err)
            assert.are.equal("failed", s:state())
            code = select(3, s:error())
        end
        assert.are.equal("ememory", code)
        assert.matches("max_memory", err)
    end)

    it("timeout -> etimeout (rows trickle in; 10 kB rows so the server flushes each)", function()
        local s = assert(conn:stream("SELECT g, repeat('x', 10000), pg_sleep(0.01) FROM generate_series(1, 1000) g",
                                     nil, { timeout = "300ms", chunk_rows = 1 }))
        local t0 = H.now()
        local n, err = drain(s)
        assert.matches("etimeout", err)
        assert.matches("timeout", err)
        assert.is_true(n > 0 and n < 1000)
        assert.is_true(H.now() - t0 < 3)
    end)

    it("max_rows -> exactly max_rows rows, a normal end in state limited", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 100000) g", nil,
                                     { max_rows = 1234, chunk_rows = 500 }))
        local n, err = drain(s)
        assert.is_nil(err)
        assert.are.equal(1234, n)
        assert.are.equal("limited", s:state())
    end)

    it("statement_timeout -> esql 57014 from the server", function()
        local s, err, code = conn:stream("SELECT pg_sleep(2)", nil, { statement_timeout = "200ms" })
        if s then
            local _
            _, err = drain(s)
            code = select(3, s:error())
        end
        assert.are.equal("esql", code)
        assert.matches("57014", err)
        assert.matches("statement timeout", err)
    end)

    it("pause_timeout with on_pause_timeout=cancel -> epause_timeout", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 100000) g", nil,
            { chunk_rows = 100, pause_timeout = "200ms", on_pause_timeout = "cancel" }))
        assert(s:chunk())
        s:pause()
        local t0 = H.now()
        local c, err, code = s:chunk()     -- buffer empty and paused: waits, then fails
        assert.is_nil(c)
        assert.are.equal("epause_timeout", code)
        assert.matches("pause_timeout", err)
        assert.is_true(H.now() - t0 >= 0.15)
        local _, rerr = drain(s)
        assert.matches("epause_timeout", rerr)
    end)

    it("max_rate throttles delivery", function()
        local s = assert(conn:stream("SELECT g FROM generate_series(1, 300) g", nil,
                                     { max_rate = 1000, chunk_rows = 50 }))
        local t0 = H.now()
        local n = drain(s)
        assert.are.equal(300, n)
        assert.is_true(H.now() - t0 >= 0.15, "not throttled")
    end)
end)
