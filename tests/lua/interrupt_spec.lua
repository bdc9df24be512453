-- Ctrl-C in the standalone interpreters: a blocking call (connect, open,
-- the next chunk) gives up, the server query is cancelled, and the script
-- dies with the interpreter's "interrupted!" (issue 10, item 12).
local H = require "helper"

-- The child script: prints "ready" once connected, then blocks in `what`.
local scripts = {
    open = [[
        local conn = assert(pgspout.connect(dsn))
        io.stderr:write("ready\n")
        conn:stream("SELECT pg_sleep(120) /* MARK */")
    ]],
    next = [[
        local conn = assert(pgspout.connect(dsn))
        local s = assert(conn:stream("SELECT 1 UNION ALL SELECT pg_sleep(120)::text::int /* MARK */",
                                     nil, { chunk_rows = 1 }))
        io.stderr:write("ready\n")
        for _ in s:rows() do end
    ]],
}

local function sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true -- Lua 5.1 gives the status, LuaJIT 5.2-style true
end

local function interpreters()
    local found = {}
    for _, name in ipairs({ "luajit", "lua5.1" }) do
        local p = io.popen("command -v " .. name .. " 2>/dev/null")
        local path = p:read("*l")
        p:close()
        if path and path ~= "" then found[#found + 1] = path end
    end
    return found
end

local function run_interrupted(interp, what)
    local mark = H.marker("int_" .. what)
    local dir = os.tmpname()
    os.remove(dir)
    assert(sh("mkdir -p " .. dir))
    local script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write("package.path = " .. string.format("%q", package.path) .. "\n")
    f:write("package.cpath = " .. string.format("%q", package.cpath) .. "\n")
    f:write("local pgspout = require 'pgspout'\n")
    f:write("local dsn = " .. string.format("%q", H.dsn) .. "\n")
    f:write((scripts[what]:gsub("MARK", mark)))
    f:close()
    -- start it in the background; its pid and output go to files
    os.execute(string.format("%s %s >%s/out 2>&1 & echo $! >%s/pid", interp, script, dir, dir))
    local pf = assert(io.open(dir .. "/pid"))
    local pid = pf:read("*l")
    pf:close()
    -- wait until it blocks on the server (generous: a loaded machine)
    local running = H.wait_until(function() return H.running(mark) > 0 end, 60)
    assert.is_truthy(running, "the child never started its query")
    local t0 = H.now()
    os.execute("kill -INT " .. pid)
    -- it must exit well before the 120 s sleep ends; 60 s is generous
    local gone = H.wait_until(function() return not sh("kill -0 " .. pid .. " 2>/dev/null") end,
                              60, 0.1)
    local took = H.now() - t0
    local of = assert(io.open(dir .. "/out"))
    local out = of:read("*a")
    of:close()
    if not gone then os.execute("kill -9 " .. pid) end
    os.execute("rm -rf " .. dir)
    assert.is_truthy(gone, interp .. " did not exit after SIGINT: " .. out)
    assert.matches("interrupted!", out)
    assert.is_true(took < 60)
    -- the server query was cancelled, not left to run
    assert.are.equal(0, H.wait_until(function() return H.running(mark) == 0 and 0 end, 30))
end

describe("Ctrl-C", function()
    for _, interp in ipairs(interpreters()) do
        it("interrupts a blocking open under " .. interp, function()
            run_interrupted(interp, "open")
        end)
        it("interrupts a blocking next chunk under " .. interp, function()
            run_interrupted(interp, "next")
        end)
    end
end)
