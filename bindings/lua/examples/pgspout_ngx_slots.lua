--- Admission control for the example's database requests, per nginx worker
-- process: a request takes a slot on the event loop before it opens a
-- stream, and gives it back once its stream is closed (at the latest when
-- the request ends: the log phase calls release, see nginx.conf.in).
--
-- Why: the database work runs in nginx's thread pool (a few threads), and a
-- stream's connection goes back to the pool only through that pool's
-- threads (its last fetch or its close). If more requests than the pool
-- has connections opened at once, the opens waiting for a connection
-- inside the threads would hold all of them, the requests owning the
-- connections could not fetch or close, and every open would wait out its
-- acquire_timeout: measured with 64 wrk connections against 32 pooled ones
-- and 4 threads, one-row requests fell from ~4,800 to ~670 per second with
-- 503s. With slots = the pool's max_size, a request that has a slot always
-- finds a connection (or opens one), and the others queue here, on the
-- event loop, holding no thread, no Lua VM and no connection.
--
-- Settings (environment of nginx, see nginx.conf.in):
--   PGSPOUT_POOL_SIZE  slots = the pool's max_size (default 32)
--   PGSPOUT_POOL_WAIT  seconds a request may queue for a slot (default 5;
--                      0 = never queue); then 503 with a JSON error
-- Each request in a slot borrows at most two Lua VMs of nginx's worker
-- thread pool at once (a fetch, and the close of an abort), so keep
-- 2 x PGSPOUT_POOL_SIZE under lua_worker_thread_vm_pool_size (default 100),
-- or requests fail with "no available Lua vm".
local semaphore = require "ngx.semaphore"

local M = {}

M.size = tonumber(os.getenv("PGSPOUT_POOL_SIZE") or "") or 32
M.wait = tonumber(os.getenv("PGSPOUT_POOL_WAIT") or "") or 5

local sem -- made on first use, in the worker process (not in the master)

--- acquire() -> true | nil, "timeout" (no slot came free within the wait)
-- Waits on the event loop; a request holds at most one slot.
function M.acquire()
    local ctx = ngx.ctx
    if ctx.pgspout_slot then return true end
    if not sem then
        local err
        sem, err = semaphore.new(M.size)
        if not sem then return nil, err end
    end
    local ok, err = sem:wait(M.wait)
    if not ok then return nil, err end
    ctx.pgspout_slot = true
    return true
end

--- release(): gives the request's slot back; a no-op without one
function M.release()
    local ctx = ngx.ctx
    if ctx.pgspout_slot then
        ctx.pgspout_slot = nil
        sem:post(1)
    end
end

--- stats() -> slots in use, requests queued
function M.stats()
    if not sem then return 0, 0 end
    local free = sem:count()
    if free >= 0 then return M.size - free, 0 end
    return M.size, -free
end

return M
