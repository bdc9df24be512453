-- wrk script: GET /row?id=N with N uniform in [1, ROWS] (default 1,000,000),
-- a different sequence per wrk thread.
local counter = 0
function setup(thread)
    counter = counter + 1
    thread:set("seed", counter)
end

local rows
function init(args)
    math.randomseed(os.time() * 1000 + (seed or 0))
    rows = tonumber(os.getenv("ROWS") or "") or 1000000
end

function request()
    return wrk.format("GET", "/row?id=" .. math.random(1, rows))
end
