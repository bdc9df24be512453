-- pgspout.pool(dsn, opts): the process-wide pool of a DSN and keys - reuse
-- of backends, connections back on close/__gc and at a stream's end,
-- session state reset between users, exhaustion, registry streams on it.
local H = require "helper"
local pgspout = H.pgspout

local function pid_of(s)
    local pid
    for row in s:rows() do pid = row[1] end
    return pid
end

-- each test its own pool: a distinct application_name is a distinct key
local n = 0
local function new_pool(opts)
    n = n + 1
    opts = opts or {}
    opts.application_name = ("pgs_lua_pool_%d_%d"):format(n, math.random(1e6))
    local p = assert(pgspout.pool(H.dsn, opts))
    return p, opts.application_name
end

describe("pgspout.pool", function()
    it("is one pool per DSN and keys, shared with registry_open", function()
        local p, app = new_pool({ max_size = 3 })
        local q = assert(pgspout.pool(H.dsn, { application_name = app, max_size = 3,
                                               chunk_rows = 5, rows = "dict" }))
        local before = p:stats().acquires
        local c = assert(q:connection())
        assert.are.equal(before + 1, p:stats().acquires) -- the same pool
        c:close()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT 1", nil,
                                                { application_name = app, max_size = 3 }))
        assert.are.equal(before + 2, p:stats().acquires)
        pgspout.registry_close(id)
        assert.are.equal(3, p:stats().max_size)
        local other = assert(pgspout.pool(H.dsn, { application_name = app, max_size = 4 }))
        assert.are.equal(4, other:stats().max_size)
    end)

    it("reuses one backend for sequential streams", function()
        local p, app = new_pool()
        local first = pid_of(assert(p:stream("SELECT pg_backend_pid()")))
        for _ = 1, 20 do
            local s = assert(p:stream("SELECT pg_backend_pid()"))
            assert.are.equal(first, pid_of(s))
            s:close()
        end
        assert.are.equal(1, p:stats().created)
        assert.are.equal(1, H.backends(app))
    end)

    it("gives the connection back at the stream's end, on close and on __gc", function()
        local p = new_pool({ max_size = 1, acquire_timeout = "5s" })
        local s = assert(p:stream("SELECT g FROM generate_series(1, 3000) g"))
        assert.are.equal(1, p:stats().in_use)
        local k = 0
        for _ in s:rows() do k = k + 1 end
        assert.are.equal(3000, k)
        assert.are.equal(0, p:stats().in_use) -- read to the end: back already
        s = assert(p:stream("SELECT generate_series(1, 100000000) AS g", nil, { chunk_rows = 100 }))
        assert.is_table(s:chunk())
        s:close() -- mid-stream: cancelled, then back
        assert.are.equal(0, p:stats().in_use)
        local c = assert(p:connection())
        c:close()
        assert.are.equal(0, p:stats().in_use)
        c = assert(p:connection())
        c = nil -- luacheck: ignore
        collectgarbage(); collectgarbage()
        assert.are.equal(0, p:stats().in_use)
        s = assert(p:stream("SELECT generate_series(1, 100000000) AS g", nil, { chunk_rows = 100 }))
        assert.is_table(s:chunk())
        s = nil -- luacheck: ignore
        collectgarbage(); collectgarbage()
        assert.are.equal(0, p:stats().in_use)
        assert.are.equal(1, p:stats().created)
    end)

    it("resets what a user leaves behind before the next one", function()
        local p = new_pool({ max_size = 1 })
        local c = assert(p:connection())
        local pid = H.query("SELECT pg_backend_pid()", nil, nil, c)[1][1]
        H.query("SET work_mem = '7MB'", nil, nil, c)
        H.query("LISTEN pgs_lua_pool", nil, nil, c)
        H.query("BEGIN ISOLATION LEVEL SERIALIZABLE", nil, nil, c)
        c:close()
        c = assert(p:connection())
        local r = H.query([[SELECT pg_backend_pid(), current_setting('work_mem'),
                                   (SELECT count(*)::int FROM pg_listening_channels()),
                                   current_setting('transaction_isolation')]], nil, nil, c)[1]
        assert.are.equal(pid, r[1]) -- the same backend, reset
        assert.are_not.equal("7MB", r[2])
        assert.are.equal(0, r[3])
        assert.are.equal("read committed", r[4])
        c:close()
    end)

    it("waits, then fails with etimeout when exhausted", function()
        local p = new_pool({ max_size = 1, acquire_timeout = "100ms" })
        local c = assert(p:connection())
        local t0 = H.now()
        local none, err, code = p:connection()
        assert.is_nil(none)
        assert.are.equal("etimeout", code)
        assert.matches("pool exhausted", err)
        assert.is_true(H.now() - t0 >= 0.09)
        local s, err2, code2 = p:stream("SELECT 1")
        assert.is_nil(s)
        assert.are.equal("etimeout", code2, err2)
        assert.are.equal(2, p:stats().timeouts)
        c:close()
        assert.is_userdata(assert(p:connection(0)))
    end)

    it("runs registry streams that give their connection back at the end", function()
        local p = new_pool({ max_size = 1 })
        local id = assert(p:registry_open("SELECT g FROM generate_series(1, $1::int) g", { 5 }))
        assert.are.equal(1, p:stats().in_use)
        local out = assert(pgspout.registry_fetch(id))
        assert.matches("5", out)
        assert.is_nil(pgspout.registry_fetch(id))
        assert.are.equal(0, p:stats().in_use)
        assert(pgspout.registry_close(id))
        id = assert(p:registry_open("SELECT generate_series(1, 100000000) AS g", nil,
                                    { chunk_rows = 100 }))
        assert(pgspout.registry_fetch(id))
        assert(pgspout.registry_cancel(id))
        assert.are.equal(0, p:stats().in_use)
        local none, _, code = pgspout.registry_fetch(id)
        assert.is_nil(none)
        assert.are.equal("ecancelled", code)
        assert(pgspout.registry_close(id))
        assert.are.equal(1, p:stats().created)
    end)

    it("rejects bad arguments", function()
        assert.has_error(function() pgspout.pool(H.dsn, "max_size=1") end)
        local p, err, code = pgspout.pool(H.dsn, { max_size = 0 })
        assert.is_nil(p)
        assert.are.equal("evalue", code, err)
        p, err, code = pgspout.pool(H.dsn, { max_size = 1, min_idle = 2 })
        assert.is_nil(p)
        assert.are.equal("evalue", code, err)
    end)
end)
