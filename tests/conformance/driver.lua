-- driver.lua - the Lua driver of the conformance suite (README.md).
--
--     luajit driver.lua CASES-FILE [CASE...]     (server: $PGSPOUT_TEST_DSN)
--
-- Runs every case through the public Lua API (require "pgspout") and prints
-- one normalized line per case, as the C driver does. Runs under LuaJIT and
-- PUC Lua 5.1 with nothing but the standard library (no JSON, no bit ops).
-- Values are rendered back into the server's text form: numbers as
-- float8out/int8out print them, booleans as t/f, strings (numeric, int8
-- beyond 2^53, and every other type the binding hands over as the server's
-- text) as they are. A value of a Lua type other than the one the binding
-- documents for its column renders as "?type:value", which no server text
-- matches. The checksum is md5sum's, over a temporary file.
--
-- Lua has no threads: cases whose actions need a second thread are marked
-- "na lua" in the case list; running into one here is an error.
--
-- A case with "partitions N" reads a table in partitions
-- (pgspout.partitions) in one snapshot this driver exports: see
-- run_partitions. With --write-plans DIR it only writes the plans of the
-- cases whose "plan-from" is lua, as DIR/<case>.json.

local pgspout = require "pgspout"

local function die(msg)
    io.stderr:write("driver.lua: ", msg, "\n")
    os.exit(2)
end

---------------------------------------------------------------- cases

local function load_cases(path)
    local cases, c = {}, nil
    local lineno = 0
    local f = io.open(path, "r")
    if not f then die("cannot open " .. path) end
    for line in f:lines() do
        lineno = lineno + 1
        line = line:gsub("[\r\n]+$", "")
        if line ~= "" and line:sub(1, 1) ~= "#" then
            local key, val = line:match("^(%S+) (.*)$")
            if not key then key, val = line, "" end
            if key == "case" then
                c = { name = val, sql = "", params = { n = 0 }, opts = {}, script = "read-all",
                      na = {}, setup = {}, partitions = 0, columns = {}, bounds = {} }
                cases[#cases + 1] = c
            elseif not c then
                die(path .. ":" .. lineno .. ": '" .. key .. "' before the first 'case'")
            elseif key == "sql" then
                c.sql = val
            elseif key == "param" then
                c.params.n = c.params.n + 1
                c.params[c.params.n] = val
            elseif key == "null" then
                c.params.n = c.params.n + 1
                c.params[c.params.n] = pgspout.null
            elseif key == "opt" then
                local k, v = val:match("^([^=]*)=(.*)$")
                if not k then die(path .. ":" .. lineno .. ": opt wants KEY=VALUE") end
                c.opts[#c.opts + 1] = { k, v }
            elseif key == "do" then
                c.script = val
            elseif key == "na" then
                c.na[val:match("^(%S+)")] = true
            elseif key == "setup" then
                c.setup[#c.setup + 1] = val
            elseif key == "partitions" then
                c.partitions = tonumber(val) or die(path .. ":" .. lineno .. ": partitions wants a number")
            elseif key == "column" or key == "bound" then
                local list = c[key .. "s"]
                list[#list + 1] = val
            elseif key == "table" or key == "key" or key == "where" or key == "plan-from" then
                c[key] = val
            elseif key ~= "expect" then
                die(path .. ":" .. lineno .. ": unknown key '" .. key .. "'")
            end
        end
    end
    f:close()
    return cases
end

---------------------------------------------------------------- rendering

local KINDS = {
    [16] = "bool", [20] = "int8", [21] = "int", [23] = "int", [26] = "int",
    [700] = "float4", [701] = "float8", [1700] = "numeric",
}

local function wrong(v)
    return "?" .. type(v) .. ":" .. tostring(v)
end

-- The shortest digits that read back as v (v finite, > 0), and the decimal
-- exponent of the first one.
local function shortest(v)
    for p = 1, 17 do
        local s = string.format("%." .. (p - 1) .. "e", v)
        if tonumber(s) == v then
            local mant, exp = s:match("^([%d.]+)e([-+]%d+)$")
            local digits = mant:gsub("%.", ""):gsub("0+$", "")
            return digits, tonumber(exp)
        end
    end
    die("no round-trip digits for " .. tostring(v))
end

-- A number as float4out/float8out print it: positional for exponents in
-- [-4, fixed_below), else d.ddde+XX.
local function pg_float(v, fixed_below)
    if v ~= v then return "NaN" end
    if v == math.huge then return "Infinity" end
    if v == -math.huge then return "-Infinity" end
    if v == 0 then return (1 / v < 0) and "-0" or "0" end
    local sign = ""
    if v < 0 then sign, v = "-", -v end
    local digits, e = shortest(v)
    local out
    if e >= -4 and e < fixed_below then
        if e < 0 then
            out = "0." .. string.rep("0", -e - 1) .. digits
        elseif #digits <= e + 1 then
            out = digits .. string.rep("0", e + 1 - #digits)
        else
            out = digits:sub(1, e + 1) .. "." .. digits:sub(e + 2)
        end
    else
        out = digits:sub(1, 1) .. (#digits > 1 and ("." .. digits:sub(2)) or "")
            .. string.format("e%s%02d", e >= 0 and "+" or "-", math.abs(e))
    end
    return sign .. out
end

local function scalar(v, kind)
    local t = type(v)
    if kind == "bool" then
        if t ~= "boolean" then return wrong(v) end
        return v and "t" or "f"
    elseif kind == "int" then
        if t ~= "number" then return wrong(v) end
        return string.format("%.0f", v)
    elseif kind == "int8" then
        -- a number up to 2^53, the exact digits as a string beyond
        if t == "number" then return string.format("%.0f", v) end
        if t == "string" and v:match("^-?%d+$") then return v end
        return wrong(v)
    elseif kind == "float4" or kind == "float8" then
        if t ~= "number" then return wrong(v) end
        return pg_float(v, kind == "float4" and 6 or 15)
    end
    -- numeric and everything else: the server's text
    if t ~= "string" then return wrong(v) end
    return v
end

local function escape(s)
    return (s:gsub("[\\\t\n\r]", { ["\\"] = "\\\\", ["\t"] = "\\t", ["\n"] = "\\n",
                                   ["\r"] = "\\r" }))
end

local function render(v, oid)
    if v == pgspout.null then return "\\N" end
    return escape(scalar(v, KINDS[oid] or "text"))
end

---------------------------------------------------------------- a run

-- "pgspout: <code>: <text>" raised by the binding -> code, sqlstate, text
-- (a "chunk:line: " position in front is Lua's usual decoration, not part
-- of the message)
local function parse_error(e)
    if type(e) ~= "string" then return "lua:error", "-", tostring(e) end
    e = e:gsub("^[^\n]-:%d+: ", "", 1)
    local code, text = e:match("^pgspout: ([%l][%l_]*): (.*)$")
    if not code then return "lua:error", "-", e end
    return code, text:match(".*%(SQLSTATE (%w%w%w%w%w)%)") or "-", text
end

-- a message returned as nil, err, code -> sqlstate
local function sqlstate_of(msg)
    return type(msg) == "string" and msg:match(".*%(SQLSTATE (%w%w%w%w%w)%)") or "-"
end

-- the outcome of a call returning true | nil, err, code (or raising)
local function outcome(fn, ...)
    local ok, r, err, code = pcall(fn, ...)
    if not ok then return (parse_error(r)) end
    if r == nil then return code or "?" end
    return "ok"
end

local function rows_metric(label)
    local key = 'pgspout_rows_total{label="' .. label .. '"} '
    for line in pgspout.metrics_text():gmatch("[^\n]+") do
        if line:sub(1, #key) == key then return tonumber(line:sub(#key + 1)) end
    end
    return 0
end

local function fmt_stat(v, exact)
    if v == nil then return "none" end
    if v < 0 then return string.format("%g", v) end
    if exact then return string.format("%.2f", v) end
    return "set"
end

---------------------------------------------------------------- partitions

local P = pgspout.partitions

local function setup(c, conn)
    for _, sql in ipairs(c.setup) do
        local s, err = conn:stream(sql)
        if not s then die(c.name .. ": setup: " .. sql .. ": " .. tostring(err)) end
        local ok, e = pcall(function() for _ in s:rows() do end end)
        if not ok then die(c.name .. ": setup: " .. sql .. ": " .. tostring(e)) end
        s:close()
    end
end

local function plan_path(dir, c) return dir .. "/" .. c.name .. ".json" end

-- The case's plan: made from its spec (importing snap), or, in a reading
-- run, the one plan-from's driver wrote. plan | nil, err, code.
local function case_plan(c, conn, snap)
    if c["plan-from"] and snap then
        local dir = os.getenv("PGSPOUT_CONF_PLANS") or die(c.name .. ": plan-from needs PGSPOUT_CONF_PLANS")
        local f = io.open(plan_path(dir, c), "rb") or die(c.name .. ": no " .. plan_path(dir, c))
        local text = f:read("*a")
        f:close()
        local plan = P.from_json(text) or die(c.name .. ": " .. plan_path(dir, c) .. " is not a plan")
        assert(plan:set_snapshot(snap))
        return plan
    end
    return P.plan(conn, c.table, {
        npartitions = c.partitions, columns = #c.columns > 0 and c.columns or nil,
        where = c.where, params = c.params, key = c.key,
        bounds = #c.bounds > 0 and c.bounds or nil, snapshot = snap })
end

-- --write-plans: the plan of a case whose plan-from is lua, made without a
-- snapshot (each reader imports its own).
local function write_plan(c, dsn, dir)
    if c["plan-from"] ~= "lua" then return end
    local conn = assert(pgspout.connect(dsn))
    setup(c, conn)
    local plan, err = case_plan(c, conn, nil)
    if not plan then die(c.name .. ": plan: " .. tostring(err)) end
    local f = io.open(plan_path(dir, c), "wb") or die("cannot write " .. plan_path(dir, c))
    f:write(plan:json())
    f:close()
    conn:close()
end

-- md5sum's checksum of a string
local function md5_of(text)
    local tmp = os.tmpname()
    local f = io.open(tmp, "wb")
    f:write(text)
    f:close()
    local p = io.popen("md5sum < '" .. tmp .. "'")
    local sum = p:read("*l"):match("^(%x+)")
    p:close()
    os.remove(tmp)
    return sum
end

local function run_case(c, dsn)
    local conn, cerr = pgspout.connect(dsn)
    if not conn then die(c.name .. ": connect: " .. tostring(cerr)) end
    setup(c, conn)
    local r = { rows = 0, ev = {}, endc = "-", sqlstate = "-", msg = "-" }
    local tmp = os.tmpname()
    local out = io.open(tmp, "wb")
    local s, it, names, oids, conn_closed
    local mode, label = "tuple", nil
    local opts = {}
    for _, kv in ipairs(c.opts) do
        opts[kv[1]] = kv[2]
        if kv[1] == "rows" then mode = kv[2] end
        if kv[1] == "label" then label = kv[2] end
    end
    local metrics = (";" .. c.script .. ";"):find(";%s*metrics%s*;") ~= nil
    if metrics and not label then die(c.name .. ": the metrics action needs a label option") end
    local before = metrics and rows_metric(label) or 0

    local function ev(tok) r.ev[#r.ev + 1] = tok end
    local function set_end(code, sqlstate, msg)
        r.endc, r.sqlstate, r.msg = code, sqlstate or "-", msg or "-"
    end

    local function add_row(row)
        local line
        if mode == "json" then
            line = type(row) == "string" and escape(row) or escape(wrong(row))
        elseif type(row) ~= "table" then
            line = escape(wrong(row))
        else
            local vals = {}
            for i = 1, #names do
                if mode == "dict" then
                    vals[i] = escape(names[i]) .. "=" .. render(row[names[i]], oids[i])
                else
                    vals[i] = render(row[i], oids[i])
                end
            end
            line = table.concat(vals, "\t")
        end
        out:write(line, "\n")
        r.rows = r.rows + 1
    end

    -- one row request: nil with a row, else the code that ended it
    local function read_one()
        if not it then it = s:rows() end
        local ok, row = pcall(it)
        if not ok then
            local code, sqlstate, msg = parse_error(row)
            set_end(code, sqlstate, msg)
            return code
        end
        if row == nil then
            set_end("done")
            return "done"
        end
        add_row(row)
        return nil
    end

    local function reuse()
        if conn_closed then return ev("reuse=-") end
        local s2, err, code = conn:stream("SELECT 42")
        if not s2 then return ev("reuse=" .. tostring(code)) end
        local got, ok, e = {}, nil, nil
        ok, e = pcall(function()
            for row in s2:rows() do got[#got + 1] = row end
        end)
        s2:close()
        if not ok then return ev("reuse=" .. (parse_error(e))) end
        ev("reuse=" .. ((#got == 1 and got[1][1] == 42) and "ok" or "bad"))
    end

    local function stats()
        local st, _, code = s:stats()
        if not st then return ev("stats=" .. tostring(code)) end
        ev(string.format("stats=%s/%d/%d/%d/%s/%s/%s", st.state, st.rows_delivered, st.pauses,
            st.expected_rows, fmt_stat(st.progress, true), fmt_stat(st.eta, false),
            fmt_stat(st.time_to_first_row, false)))
    end

    local stream_free = { reuse = true, ["conn-close"] = true, ["conn-cancel"] = true,
                          metrics = true }
    local function action(verb, arg)
        if not s and not stream_free[verb] then return ev(verb .. "=-") end
        if verb == "read" or verb == "read-all" then
            local want = verb == "read-all" and -1 or tonumber(arg or 1)
            local got, code = 0, nil
            while want < 0 or got < want do
                code = read_one()
                if code then break end
                got = got + 1
            end
            if verb == "read-all" then
                ev("all=" .. got .. ":" .. code)
            elseif got == want then
                ev("read=" .. got)
            else
                ev("read=" .. got .. ":" .. code)
            end
        elseif verb == "pause" or verb == "resume" or verb == "cancel" then
            ev(verb .. "=" .. outcome(function() return s[verb](s) end))
        elseif verb == "close" then
            s:close()
            ev("close")
        elseif verb == "conn-close" then
            conn:close()
            conn_closed = true
            ev("conn-close")
        elseif verb == "conn-cancel" then
            ev("conn-cancel=" .. outcome(function() return conn:cancel() end))
        elseif verb == "reuse" then
            reuse()
        elseif verb == "stats" then
            stats()
        elseif verb == "state" then
            ev("state=" .. tostring(s:state()))
        elseif verb == "elapsed-min" then
            ev("elapsed>=" .. arg .. "=" .. (s:stats().elapsed >= tonumber(arg) and "yes" or "no"))
        elseif verb == "metrics" then
            -- reported in the metric field
        else
            die(c.name .. ": action '" .. verb .. "' cannot run in Lua (mark the case 'na lua')")
        end
    end

    -- A partition case (as driver.c's run_partitions): export a snapshot,
    -- plan (or read plan-from's plan), ship the plan through JSON, read its
    -- partitions in order on the case's connection as one read. ev:
    -- plan=MD5 (the plan's JSON with its snapshot blanked) or plan=CODE,
    -- then all=K:CODE.
    local part_state, part_delivered = "-", 0
    local function run_partitions()
        local snap = P.snapshot(dsn) or die(c.name .. ": snapshot export failed")
        local made, perr, pcode = case_plan(c, conn, snap)
        local plan
        if not made then
            -- no SQLSTATE for a plan: the one its message quotes
            set_end(pcode or "?", sqlstate_of(perr), perr)
            ev("plan=" .. tostring(pcode))
        else
            plan = P.from_json(made:json()) or die(c.name .. ": the plan's JSON does not read back")
            if plan:snapshot() ~= snap:id() then die(c.name .. ": the plan's JSON lost its snapshot") end
            assert(plan:set_snapshot(""))
            ev("plan=" .. md5_of(plan:json()))
            assert(plan:set_snapshot(snap))
        end
        for a in c.script:gmatch("[^;]+") do
            a = a:match("^%s*(.-)%s*$")
            if a ~= "" then
                if a ~= "read-all" then die(c.name .. ": a partition case runs read-all only, not '" .. a .. "'") end
                if not plan then
                    ev("read-all=-")
                else
                    local got, code = 0, "done"
                    for i = 1, #plan do
                        if s then s:close() end
                        it = nil
                        local serr, scode
                        s, serr, scode = plan:open(conn, i, opts)
                        if not s then
                            code = scode or "?"
                            set_end(code, sqlstate_of(serr), serr)
                            break
                        end
                        names, oids = s:columns()
                        repeat
                            code = read_one()
                            if not code then got = got + 1 end
                        until code
                        part_delivered = part_delivered + s:stats().rows_delivered
                        part_state = s:state()
                        if code ~= "done" then break end
                    end
                    ev("all=" .. got .. ":" .. code)
                end
            end
        end
        snap:close()
    end

    local function run_stream()
        local sv, err, code = conn:stream(c.sql, c.params, opts)
        if sv then
            s = sv
            names, oids = s:columns()
            ev("open=ok")
        else
            set_end(code or "?", sqlstate_of(err), err)
            ev("open=" .. tostring(code))
        end
        for a in c.script:gmatch("[^;]+") do
            a = a:match("^%s*(.-)%s*$")
            if a ~= "" then
                local verb, arg = a:match("^(%S+)%s+(.*)$")
                verb = verb or a
                -- a call the API lacks or refuses with a raise: its token says so
                local ok, e = pcall(action, verb, arg)
                if not ok then ev(verb .. "=" .. (parse_error(e))) end
            end
        end
    end
    if c.partitions > 0 then run_partitions() else run_stream() end

    local state, delivered = "-", "-"
    if c.partitions > 0 then
        if part_state ~= "-" then state, delivered = part_state, string.format("%d", part_delivered) end
        if s then s:close() end
    elseif s then
        local ok, v = pcall(s.state, s)
        state = ok and tostring(v) or "?" .. (parse_error(v))
        local st
        ok, st = pcall(s.stats, s)
        delivered = ok and type(st) == "table" and st.rows_delivered
            and string.format("%d", st.rows_delivered) or "?"
        s:close()
    end
    if not conn_closed then conn:close() end
    local metric = metrics and string.format("%d", rows_metric(label) - before) or "-"

    out:close()
    local p = io.popen("md5sum < '" .. tmp .. "'")
    local sum = p:read("*l"):match("^(%x+)")
    p:close()
    os.remove(tmp)
    local msg = tostring(r.msg):gsub("\r", ""):gsub("\n", "\\n"):gsub("\t", "\\t")
    return string.format("%s rows=%d sum=%s end=%s sqlstate=%s state=%s delivered=%s metric=%s "
        .. "ev=%s msg=%s", c.name, r.rows, sum, r.endc, r.sqlstate, state, delivered, metric,
        table.concat(r.ev, ","), msg)
end

local function main()
    local args, plans = {}, nil
    for i = 1, #arg do args[i] = arg[i] end
    if args[1] == "--write-plans" and args[2] then
        plans = args[2]
        table.remove(args, 1)
        table.remove(args, 1)
    end
    if not args[1] then die("usage: driver.lua [--write-plans DIR] CASES-FILE [CASE...]") end
    local dsn = os.getenv("PGSPOUT_TEST_DSN") or die("PGSPOUT_TEST_DSN is not set")
    local cases = load_cases(args[1])
    local want, names = {}, {}
    for _, c in ipairs(cases) do names[c.name] = true end
    for i = 2, #args do
        if not names[args[i]] then die("no case named '" .. args[i] .. "'") end
        want[args[i]] = true
    end
    for _, c in ipairs(cases) do
        if plans then
            if #args < 2 or want[c.name] then write_plan(c, dsn, plans) end
        elseif #args < 2 or want[c.name] then
            if c.na.lua then
                io.write(c.name, " na\n")
            else
                io.write(run_case(c, dsn), "\n")
            end
            io.stdout:flush()
        end
    end
end

main()
