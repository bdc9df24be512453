-- Garbage collection: objects dropped at any point free everything and
-- cancel server queries; a stream keeps its connection alive.
local H = require "helper"
local pgspout = H.pgspout

-- Run fn in a coroutine of its own and drop it: the objects fn created are
-- then referenced from nowhere, not even from a dead stack slot of the
-- caller (LuaJIT marks a running frame up to its full frame size).
local function isolated(fn)
    local co = coroutine.create(fn)
    local ok, err = coroutine.resume(co)
    assert(ok, err)
    co = nil
end

local function full_gc()
    collectgarbage("collect")
    collectgarbage("collect")
end

local BIG = "FROM generate_series(1, 5000000) g"

describe("garbage collection", function()
    it("a half-read stream dropped by the GC cancels its server query", function()
        local conn = assert(pgspout.connect(H.dsn))
        local marker = H.marker("gc_half")
        -- in a function of its own, so no dead stack slot still holds s
        isolated(function()
            local s = assert(conn:stream("SELECT g, '" .. marker .. "' " .. BIG, nil, { chunk_rows = 100 }))
            local iter = s:rows()
            for _ = 1, 150 do assert(iter()) end
            assert.are.equal(1, H.running(marker))
        end)
        full_gc()
        assert.are.equal(0, H.wait_until(function() return H.running(marker) == 0 and 0 end, H.SERVER_SETTLE))
        -- and the connection, still referenced, runs the next query
        assert.are.same({ { 7 } }, H.query("SELECT 7", nil, nil, conn))
        conn:close()
    end)

    it("a stream keeps its connection alive", function()
        local app = H.marker("gc_keep")
        local box = {}
        isolated(function()
            local conn = assert(pgspout.connect(H.dsn, { application_name = app }))
            box.s = assert(conn:stream("SELECT g FROM generate_series(1, 1000) g", nil, { chunk_rows = 10 }))
        end)
        full_gc()
        assert.are.equal(1, H.backends(app))
        isolated(function()
            local n = 0
            for _ in box.s:rows() do n = n + 1 end
            assert.are.equal(1000, n)
        end)
        box.s = nil
        full_gc()
        -- both gone now: the backend disconnects
        assert.are.equal(0, H.wait_until(function() return H.backends(app) == 0 and 0 end, H.SERVER_SETTLE))
    end)

    it("a connection and its half-read stream dropped together free both", function()
        local app = H.marker("gc_both")
        isolated(function()
            local conn = assert(pgspout.connect(H.dsn, { application_name = app }))
            local s = assert(conn:stream("SELECT g " .. BIG, nil, { chunk_rows = 100 }))
            assert(s:chunk())
            assert.are.equal(1, H.backends(app))
        end)
        full_gc()
        assert.are.equal(0, H.wait_until(function() return H.backends(app) == 0 and 0 end, H.SERVER_SETTLE))
    end)

    it("survives many dropped streams and connections (no leaked backends)", function()
        local app = H.marker("gc_many")
        local function round(i)
            local conn = assert(pgspout.connect(H.dsn, { application_name = app }))
            for j = 1, 3 do
                local s = assert(conn:stream("SELECT g " .. BIG, nil, { chunk_rows = 50 }))
                assert(s:chunk())
                if j < 3 then s:close() end      -- the last one is left to the GC
            end
        end
        for i = 1, 30 do
            isolated(function() round(i) end)
            if i % 10 == 0 then full_gc() end
        end
        full_gc()
        assert.are.equal(0, H.wait_until(function() return H.backends(app) == 0 and 0 end, H.SERVER_SETTLE))
    end)

    it("a stream dropped after an error or after the end is collected quietly", function()
        local conn = assert(pgspout.connect(H.dsn))
        isolated(function()
            local s = assert(conn:stream("SELECT 1 / (g - 50) " .. "FROM generate_series(1, 100) g",
                                         nil, { chunk_rows = 10 }))
            pcall(function() for _ in s:rows() do end end)
            local s2 = conn:stream("SELECT 1")     -- the failed stream is closed for it
            assert.is_truthy(s2)
            for _ in s2:rows() do end
        end)
        full_gc()
        assert.are.same({ { 2 } }, H.query("SELECT 2", nil, nil, conn))
        conn:close()
        full_gc()
    end)
end)
