-- Shared helpers for the busted specs (tests/lua/*_spec.lua).
-- tests/lua/run.sh sets package.path/cpath to the built module and exports
-- PGSPOUT_TEST_DSN.
local pgspout = require "pgspout"

local H = { pgspout = pgspout }

H.dsn = os.getenv("PGSPOUT_TEST_DSN")
assert(H.dsn and H.dsn ~= "", "PGSPOUT_TEST_DSN is not set (use tests/lua/run.sh)")

local has_ffi, ffi = pcall(require, "ffi")
H.has_ffi = has_ffi

if has_ffi then
    ffi.cdef [[
        typedef struct { long tv_sec; long tv_nsec; } pgs_test_timespec;
        int clock_gettime(int clk, pgs_test_timespec *ts);
        int poll(void *fds, unsigned long nfds, int timeout);
    ]]
end

-- without the FFI (PUC Lua 5.1): luasocket's clock, else whole seconds
local has_socket, socket = pcall(require, "socket")

--- Monotonic seconds.
function H.now()
    if has_ffi then
        local ts = ffi.new("pgs_test_timespec")
        ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
        return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
    end
    if has_socket then return socket.gettime() end
    return os.time()
end

function H.sleep(s)
    if has_ffi then
        ffi.C.poll(nil, 0, math.floor(s * 1000))
    elseif has_socket then
        socket.sleep(s)
    else
        os.execute("sleep " .. tostring(s))
    end
end

--- Poll fn() until it returns a truthy value or timeout seconds pass.
-- How long to wait for the server to show an effect that follows a close or
-- a reap asynchronously (a backend exiting, a cancelled query leaving
-- pg_stat_activity). A hang guard, not a latency bound: the wait returns as
-- soon as the effect shows; under ASan on a loaded 2-core machine a reap
-- took over 6 s (cancel_timeout is 5 s).
H.SERVER_SETTLE = 60

function H.wait_until(fn, timeout, step)
    local deadline = H.now() + (timeout or 5)
    repeat
        local v = fn()
        if v then return v end
        H.sleep(step or 0.05)
    until H.now() > deadline
    return fn()
end

--- A connection for checks (pg_stat_activity, server-side values).
local admin
function H.admin()
    if not admin or not admin:ok() then
        admin = assert(pgspout.connect(H.dsn))
    end
    return admin
end

--- All rows of sql (arrays).
function H.query(sql, params, opts, conn)
    conn = conn or H.admin()
    local s, err = conn:stream(sql, params, opts)
    assert(s, err)
    local rows = {}
    for row in s:rows() do rows[#rows + 1] = row end
    s:close()
    return rows
end

function H.scalar(sql, params)
    local rows = H.query(sql, params)
    return rows[1] and rows[1][1]
end

--- Number of server backends (other than the checker's) running a query
-- whose text contains marker.
function H.running(marker)
    return H.scalar([[SELECT count(*)::int FROM pg_stat_activity
                      WHERE pid <> pg_backend_pid() AND state <> 'idle'
                        AND query LIKE '%' || $1 || '%']], { marker })
end

--- Number of backends (any state) with this application_name.
function H.backends(appname)
    return H.scalar([[SELECT count(*)::int FROM pg_stat_activity
                      WHERE pid <> pg_backend_pid() AND application_name = $1]], { appname })
end

--- Incremental MD5 (LuaJIT FFI on libcrypto). nil when unavailable.
function H.md5()
    if not has_ffi then return nil end
    if not H._crypto then
        ffi.cdef [[
            typedef struct { unsigned int A,B,C,D,Nl,Nh,data[16]; unsigned int num; } pgs_test_MD5_CTX;
            int MD5_Init(pgs_test_MD5_CTX *c);
            int MD5_Update(pgs_test_MD5_CTX *c, const void *data, size_t len);
            int MD5_Final(unsigned char *md, pgs_test_MD5_CTX *c);
        ]]
        local ok, lib = pcall(ffi.load, "libcrypto.so.3")
        if not ok then ok, lib = pcall(ffi.load, "crypto") end
        if not ok then return nil end
        H._crypto = lib
    end
    local C = H._crypto
    local ctx = ffi.new("pgs_test_MD5_CTX")
    C.MD5_Init(ctx)
    return {
        update = function(_, s) C.MD5_Update(ctx, s, #s) end,
        hex = function()
            local out = ffi.new("unsigned char[16]")
            C.MD5_Final(out, ctx)
            local t = {}
            for i = 0, 15 do t[#t + 1] = string.format("%02x", out[i]) end
            return table.concat(t)
        end,
    }
end

--- A unique marker to find a test's query in pg_stat_activity.
local seq = 0
function H.marker(name)
    seq = seq + 1
    return string.format("pgspout_test_%s_%d_%d", name, seq, math.random(1e9))
end

return H
