-- pgspout.partitions (issue 16): a snapshot exported and held, plans of a
-- table by blocks and by key, plans as JSON, partitions read as ordinary
-- streams importing the snapshot. The oracle is one serial read in the same
-- snapshot, its checksums computed by the server (count, sums, a hash
-- column the server fills, md5 of the ids); between partitions and inside
-- them another connection commits inserts, deletes and updates that move
-- rows to the table's end.
local H = require "helper"
local pgspout = H.pgspout
local P = pgspout.partitions

local ROWS = 20000
local ORACLE = [[SELECT count(*)::int, sum(id)::bigint, sum(h)::bigint, sum(v)::bigint,
                        md5(string_agg(id::text, ',' ORDER BY id)) FROM part_lua]]

local function exec(conn, sql, params)
    local s = assert(conn:stream(sql, params))
    for _ in s:rows() do end
    s:close()
end

local function make_table()
    local c = H.admin()
    exec(c, "DROP TABLE IF EXISTS part_lua")
    -- h: a hash the server computes for every row version
    exec(c, [[CREATE TABLE part_lua (id bigint PRIMARY KEY, k int NOT NULL, v int NOT NULL,
                t text NOT NULL, h int GENERATED ALWAYS AS (hashtext(id::text || t)) STORED)]])
    exec(c, [[INSERT INTO part_lua (id, k, v, t)
              SELECT g, (g * 7919) % 30000, g % 1000, 'row ' || g FROM generate_series(1, $1) g]],
        { ROWS })
    exec(c, "ANALYZE part_lua")
end

-- A writer on its own connection: w:batch() commits one batch of changes.
-- moves_only: only moves (a row's id changes, so its new version goes to
-- the table's end), which keep the row count.
local function writer(moves_only)
    local c = assert(pgspout.connect(H.dsn))
    local w = { batches = 0 }
    function w.batch()
        local b = w.batches
        if not moves_only then
            exec(c, [[INSERT INTO part_lua (id, k, v, t) SELECT 2000000 + $1::int * 100 + g, g, 7, 'new'
                      FROM generate_series(1, 50) g]], { b })
            exec(c, [[DELETE FROM part_lua WHERE id IN (SELECT id FROM part_lua WHERE id < 1000000
                      AND id % 89 = $1::int % 89 LIMIT 20)]], { b })
        end
        exec(c, [[UPDATE part_lua SET id = id + 1000000, v = v + $2::int WHERE id IN (SELECT id
                  FROM part_lua WHERE id < 1000000 ORDER BY id LIMIT 25 OFFSET ($1::int * 37) % 15000)]],
            { b, moves_only and 0 or 1 })
        w.batches = b + 1
    end
    function w.close() c:close() end
    return w
end

-- Read every partition of plan in turn on its own connection, the writer
-- committing after each partition's first row and after each partition.
-- Returns the totals (count, sum(id), sum(h), sum(v), sorted ids) and each
-- partition's row count.
local function read_all(plan, w)
    local n, sid, sh, sv, ids, sizes = 0, 0, 0, 0, {}, {}
    for i = 1, #plan do
        local c = assert(pgspout.connect(H.dsn))
        local s = assert(plan:open(c, i, { chunk_rows = 500 }))
        local k = 0
        for row in s:rows("map") do
            n, k = n + 1, k + 1
            sid, sh, sv = sid + row.id, sh + row.h, sv + row.v
            ids[#ids + 1] = row.id
            if k == 1 then w.batch() end
        end
        assert.are.equal("done", s:state())
        assert.are.equal(k, s:stats().rows_delivered)
        sizes[i] = k
        s:close()
        c:close()
        w.batch()
    end
    table.sort(ids)
    return { n, sid, sh, sv, ids }, sizes
end

-- the server's md5 of the ids as the oracle's string_agg writes them
local function ids_md5(ids)
    local parts = {}
    for i, id in ipairs(ids) do parts[i] = ("%.0f"):format(id) end
    return H.scalar("SELECT md5($1)", { table.concat(parts, ",") })
end

local function oracle(snap)
    local row = H.query(ORACLE, nil, snap and { snapshot = snap:id() } or nil)[1]
    return { row[1], row[2], row[3], row[4], row[5] }
end

describe("pgspout.partitions", function()
    local conn
    before_each(function()
        make_table()
        conn = assert(pgspout.connect(H.dsn))
    end)
    after_each(function() conn:close() end)

    for _, how in ipairs({
        { name = "block ranges", opts = { npartitions = 4 }, n = 4 },
        { name = "key ranges from the histogram", opts = { npartitions = 3, key = "k" }, n = 3 },
        { name = "key ranges at given bounds", opts = { key = "id", bounds = { 5000, 12000 } }, n = 3 },
    }) do
        it(how.name .. ": the partitions' union is the serial read in the same snapshot", function()
            local snap = assert(P.snapshot(H.dsn))
            local opts = { columns = { "id", "v", "h" }, snapshot = snap }
            for k, v in pairs(how.opts) do opts[k] = v end
            local plan = assert(P.plan(conn, "part_lua", opts))
            assert.are.equal(how.n, #plan)
            assert.are.equal(snap:id(), plan:snapshot())
            assert.are.equal("public.part_lua", plan:table())
            local w = writer(false)
            local got, sizes = read_all(plan, w)
            w.close()
            local serial = oracle(snap)
            local now = oracle(nil)
            snap:close()
            assert.is_true(w.batches >= 2 * how.n, w.batches)
            for i = 2, #got[5] do
                assert.are_not.equal(got[5][i - 1], got[5][i]) -- no row twice
            end
            assert.are.same({ serial[1], serial[2], serial[3], serial[4] },
                { got[1], got[2], got[3], got[4] })
            assert.are.equal(serial[5], ids_md5(got[5]))
            assert.are.equal(ROWS, serial[1]) -- the snapshot is the table before any change
            assert.are_not.same(serial, now)  -- the writer's commits are not in it
            for i = 1, how.n do assert.is_true(sizes[i] > 0, "partition " .. i .. " is empty") end
        end)
    end

    it("without a snapshot the same reads see rows twice (the control)", function()
        local plan = assert(P.plan(conn, "part_lua", { npartitions = 4, columns = { "id", "v", "h" } }))
        assert.are.equal("", plan:snapshot())
        local w = writer(true)
        local got = read_all(plan, w)
        w.close()
        -- every committed state has ROWS rows; moved rows were read in an
        -- early partition and again, moved, in the last
        assert.are.equal(ROWS, H.scalar("SELECT count(*)::int FROM part_lua"))
        assert.is_true(got[1] > ROWS, got[1])
        -- the same plan in a snapshot reads each row once
        local snap = assert(P.snapshot(H.dsn))
        assert.is_true(plan:set_snapshot(snap))
        assert.are.equal(snap:id(), plan:snapshot())
        w = writer(true)
        got = read_all(plan, w)
        w.close()
        assert.are.equal(ROWS, got[1])
        assert.are.equal(oracle(snap)[5], ids_md5(got[5]))
        snap:close()
    end)

    it("ships as JSON: the parsed plan has the same partitions and reads the same rows", function()
        local snap = assert(P.snapshot(H.dsn))
        local plan = assert(P.plan(conn, "part_lua", {
            npartitions = 3, columns = { "id" }, snapshot = snap,
            where = "id % $1 = 0 AND ($2::text IS NULL OR t <> $2)", params = { 7, pgspout.null } }))
        local text = plan:json()
        assert.matches('^{"pgspout_plan":1,"snapshot":"' .. snap:id():gsub("%-", "%%-") .. '"', text)
        local shipped = assert(P.from_json(text))
        assert.are.equal(text, shipped:json())
        assert.are.equal(#plan, #shipped)
        assert.are.same(plan:partitions(), shipped:partitions())
        local p1 = shipped:partition(1)
        assert.are.equal(3, p1.params.n) -- 7, NULL, then the first block bound
        assert.are.equal("7", p1.params[1])
        assert.are.equal(pgspout.null, p1.params[2])
        assert.is_nil(shipped:partition(0))
        assert.is_nil(shipped:partition(#shipped + 1))
        exec(conn, "DELETE FROM part_lua WHERE id % 7 = 0 AND id < 700") -- after the snapshot
        local n = 0
        for i = 1, #shipped do
            local c = assert(pgspout.connect(H.dsn))
            local s = assert(shipped:open(c, i))
            for row in s:rows() do
                assert.are.equal(0, row[1] % 7)
                n = n + 1
            end
            c:close()
        end
        assert.are.equal(math.floor(ROWS / 7), n)
        assert.are.equal(n, H.query("SELECT count(*)::int FROM part_lua WHERE id % 7 = 0", nil,
            { snapshot = snap:id() })[1][1])
        assert.are.equal(n - 99, H.scalar("SELECT count(*)::int FROM part_lua WHERE id % 7 = 0"))
        snap:close()
    end)

    it("reads a plan as other writers format it (whitespace, unknown keys, nulls)", function()
        local plan = assert(P.from_json([[
            { "pgspout_plan": 1, "comment": {"any": [1, 2.5, null, true]},
              "snapshot": "", "table": "t",
              "partitions": [ { "sql": "SELECT $1::int, $2::text IS NULL", "params": ["5", null] },
                              { "params": [], "sql": "SELECT 'caf\u00e9 \"q\"'" } ] }]]))
        assert.are.equal(2, #plan)
        assert.are.equal("", plan:snapshot())
        assert.are.same({ sql = "SELECT 'café \"q\"'", params = { n = 0 } }, plan:partition(2))
        local rows = {}
        for row in assert(plan:open(conn, 1)):rows() do rows[#rows + 1] = row end
        assert.are.same({ { 5, true } }, rows)
        assert.are.equal("café \"q\"", H.query(plan:partition(2).sql)[1][1])
        for _, bad in ipairs({ "", "{}", "[]", '{"pgspout_plan":2,"partitions":[]}',
            '{"pgspout_plan":1,"partitions":[{"sql":1}]}', '{"pgspout_plan":1,"partitions":[]}' }) do
            local p, err, code = P.from_json(bad)
            assert.is_nil(p, bad)
            assert.matches("plan JSON", err)
            assert.are.equal("evalue", code)
        end
    end)

    it("each partition is an ordinary stream: options, shapes, limits", function()
        local snap = assert(P.snapshot(H.dsn))
        local plan = assert(P.plan(conn, "part_lua", { npartitions = 2, columns = { "id", "t" },
                                                       snapshot = snap }))
        -- the plan's snapshot wins over an option given for the stream
        local s = assert(plan:open(conn, 1, { rows = "dict", max_rows = 3, label = "part",
                                              snapshot = "00000000-00000000-0" }))
        local rows = {}
        for row in s:rows() do rows[#rows + 1] = row end
        assert.are.equal(3, #rows)
        assert.are.equal("row " .. rows[1].id, rows[1].t)
        assert.are.equal("limited", s:state())
        s:close()
        local none, err, code = plan:open(conn, 3)
        assert.is_nil(none)
        assert.matches("out of range %(1%.%.2%)", err)
        assert.are.equal("einval", code)
        snap:close()
        -- the holder gone: importing fails loudly
        local late
        late, err, code = plan:open(conn, 1)
        assert.is_nil(late)
        assert.matches("could not import snapshot", err)
        assert.are.equal("esql", code)
        assert.is_true(conn:ok())
    end)

    it("the holder: id after close, ok, idempotent close, __gc releases it", function()
        local app = H.marker("snap"):sub(1, 60)
        local snap = assert(P.snapshot(H.dsn, { application_name = app, connect_timeout = 10 }))
        local id = snap:id()
        assert.matches("^%x+%-%x+%-%x+$", id)
        assert.is_true(snap:ok())
        assert.are.equal("", snap:error())
        assert.are.equal(1, H.backends(app))
        snap:close()
        snap:close()
        assert.are.equal(id, snap:id())
        assert.is_false(snap:ok())
        assert.is_true(H.wait_until(function() return H.backends(app) == 0 end, H.SERVER_SETTLE))
        snap = assert(P.snapshot(H.dsn, { application_name = app }))
        id = snap:id()
        assert.are.equal(1, H.backends(app))
        snap = nil
        collectgarbage()
        collectgarbage()
        assert.is_true(H.wait_until(function() return H.backends(app) == 0 end, H.SERVER_SETTLE))
        local s, err = conn:stream("SELECT 1", nil, { snapshot = id })
        assert.is_nil(s)
        assert.matches("could not import snapshot", err)
        -- a failed export: nil, message, code
        local bad, berr, bcode = P.snapshot("host=127.0.0.1 port=1 connect_timeout=2")
        assert.is_nil(bad)
        assert.are.equal("econnect", bcode)
        assert.is_string(berr)
        local b2, e2, c2 = P.snapshot(H.dsn, { no_such_option = 1 })
        assert.is_nil(b2)
        assert.matches("no_such_option", e2)
        assert.are.equal("eoption", c2)
    end)

    it("refuses bad names and bad arguments; the table is untouched", function()
        for _, bad in ipairs({ "part_lua; DROP TABLE part_lua", "no_such_table", '"part_lua' }) do
            local p, err, code = P.plan(conn, bad, { npartitions = 2 })
            assert.is_nil(p)
            assert.matches("table", err)
            assert.are.equal("evalue", code)
        end
        local p, err, code = P.plan(conn, "part_lua", { npartitions = 2, columns = { "id; DROP TABLE part_lua" } })
        assert.is_nil(p)
        assert.matches("no column named", err)
        assert.are.equal("evalue", code)
        p, err, code = P.plan(conn, "part_lua", { npartitions = 2, key = "K" })
        assert.is_nil(p)
        assert.matches("no column named", err)
        p, err, code = P.plan(conn, "part_lua", { npartitions = 0 })
        assert.is_nil(p)
        assert.matches("npartitions", err)
        assert.are.equal("einval", code)
        p, err, code = P.plan(conn, "part_lua", { key = "id", bounds = { "x" } })
        assert.is_nil(p)
        assert.are.equal("evalue", code)
        -- programming errors raise
        assert.has_error(function() P.plan(conn, "part_lua", { npartition = 2 }) end)
        assert.has_error(function() P.plan(conn, "part_lua", { npartitions = 1.5 }) end)
        assert.has_error(function() P.plan(conn, "part_lua", { columns = { 1 } }) end)
        assert.has_error(function() P.plan(conn, "part_lua", { where = {} }) end)
        assert.has_error(function() P.plan(conn, "part_lua", { snapshot = 42 }) end)
        assert.has_error(function() P.plan(conn, 42) end)
        assert.has_error(function() P.plan("not a connection", "part_lua") end)
        assert.has_error(function() P.plan(conn, "part\0lua") end)
        local plan = assert(P.plan(conn, "part_lua"))
        assert.are.equal(1, #plan)
        local ok
        ok, err, code = plan:set_snapshot("x'; DROP TABLE part_lua; --")
        assert.is_nil(ok)
        assert.matches("not a snapshot id", err)
        assert.are.equal("evalue", code)
        -- a busy or closed connection
        local s = assert(conn:stream("SELECT generate_series(1, 100000)", nil, { chunk_rows = 10 }))
        p, err, code = P.plan(conn, "part_lua")
        assert.is_nil(p)
        assert.are.equal("ebusy", code)
        s:close()
        local c2 = assert(pgspout.connect(H.dsn))
        c2:close()
        p, err, code = P.plan(c2, "part_lua")
        assert.is_nil(p)
        assert.matches("closed", err)
        assert.are.equal("estate", code)
        assert.are.equal(ROWS, H.scalar("SELECT count(*)::int FROM part_lua"))
    end)
end)
