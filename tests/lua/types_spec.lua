-- Value mapping: every Lua value is compared with what the server computes.
local H = require "helper"
local pgspout = H.pgspout

describe("type mapping", function()
    local conn
    setup(function() conn = assert(pgspout.connect(H.dsn)) end)
    teardown(function() conn:close() end)

    -- expression, expected Lua type, and how to compare with the text form
    local cases = {
        { "1::int2", "number" }, { "(-32768)::int2", "number" },
        { "2147483647::int4", "number" }, { "(-2147483648)::int4", "number" },
        { "4294967295::oid", "number" },
        { "9007199254740992::int8", "number" },          -- 2^53: exact
        { "(-9007199254740992)::int8", "number" },
        { "9007199254740993::int8", "string" },          -- beyond 2^53
        { "(-9223372036854775808)::int8", "string" },
        { "9223372036854775807::int8", "string" },
        { "0::int8", "number" },
        { "1.5::float4", "number" }, { "0.1::float8", "number" },
        { "1e300::float8", "number" }, { "(-2.5e-300)::float8", "number" },
        { "123.456::numeric", "string" },
        { "'12345678901234567890.000000000001'::numeric", "string" },
        { "'NaN'::numeric", "string" },
        { "'héllo wörld ✓'::text", "string" }, { "''::text", "string" },
        { "'a\\nb'::text", "string" },
        { "'2024-02-29 12:34:56+00'::timestamptz", "string" },
        { "'2024-02-29'::date", "string" },
        { "'\\x00ff'::bytea", "string" },
        { "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid", "string" },
        { "ARRAY[1,2,3]", "string" },
        { "'{\"a\": [1, 2, {\"b\": null}]}'::json", "string" },
        { "'{\"b\": 1, \"a\": \"x\"}'::jsonb", "string" },
    }

    it("maps each type as documented, equal to the server's value", function()
        local exprs, texts = {}, {}
        for i, c in ipairs(cases) do
            exprs[i] = c[1]
            texts[i] = "(" .. c[1] .. ")::text"
        end
        local row = H.query("SELECT " .. table.concat(exprs, ", "), nil, nil, conn)[1]
        local text = H.query("SELECT " .. table.concat(texts, ", "), nil, nil, conn)[1]
        assert.are.equal(#cases, #row)
        for i, c in ipairs(cases) do
            local v, t = row[i], text[i]
            assert.are.equal(c[2], type(v), c[1])
            if type(v) == "number" then
                assert.are.equal(tonumber(t), v, c[1])
            else
                assert.are.equal(t, v, c[1])                 -- exact text
            end
        end
    end)

    it("maps float specials to Lua numbers", function()
        local row = H.query("SELECT 'NaN'::float8, 'Infinity'::float8, '-Infinity'::float4", nil, nil, conn)[1]
        assert.is_true(row[1] ~= row[1])
        assert.are.equal(math.huge, row[2])
        assert.are.equal(-math.huge, row[3])
    end)

    it("reads float8 exactly (the C parser agrees with tonumber on every value)", function()
        -- 17 significant digits (the slow path of strtod), every scale from
        -- 1e-25 to 1e25, negative values, and what the fast path leaves to
        -- strtod (huge, tiny, subnormal)
        local rows = H.query([[
            SELECT v, v::text FROM (
              SELECT ((g * 0.6180339887498949) - floor(g * 0.6180339887498949) - 0.5)
                     * 10 ^ (g % 51 - 25) AS v FROM generate_series(1, 20000) g
              UNION ALL SELECT unnest('{1e308,-1.7976931348623157e308,2.2250738585072014e-308,
                                        5e-324,1e-19,1e19,123456789012345678,0.1,-0}'::float8[])) t]],
                             nil, nil, conn)
        assert.are.equal(20009, #rows)
        for _, r in ipairs(rows) do
            assert.are.equal(tonumber(r[2]), r[1], r[2])
        end
    end)

    it("maps bool to booleans and NULL to pgspout.null", function()
        local row = H.query("SELECT true, false, NULL::bool, NULL::int, NULL::text, NULL::jsonb",
                            nil, nil, conn)[1]
        assert.are.equal(true, row[1])
        assert.are.equal(false, row[2])
        for i = 3, 6 do assert.are.equal(pgspout.null, row[i]) end
        assert.are.equal(6, #row)                  -- no holes: NULL is a value
        assert.are.equal("userdata", type(pgspout.null))
    end)

    it("pgspout.null equals cjson.null (and ngx.null under nginx)", function()
        local ok, cjson = pcall(require, "cjson")
        if ok then assert.are.equal(cjson.null, pgspout.null) end
    end)

    it("round-trips parameters of every Lua type", function()
        local row = H.query("SELECT $1::int8, $2::float8, $3::text, $4::bool, $5::int, $6::text, $7::float8, $8::numeric",
            { 9007199254740992, 0.1, "x'y", true, pgspout.null, "", -1.5e-7, 1e15 }, nil, conn)[1]
        assert.are.same({ 9007199254740992, 0.1, "x'y", true, pgspout.null, "", -1.5e-7, "1000000000000000" }, row)
    end)

    it("sends integers exactly and honours params.n for trailing NULLs", function()
        local row = H.query("SELECT $1::text, $2::text, $3::text IS NULL",
                            { 123456789012, 2 ^ 53, n = 3 }, nil, conn)[1]
        assert.are.same({ "123456789012", "9007199254740992", true }, row)
    end)

    it("keys map rows by column name", function()
        local s = assert(conn:stream("SELECT 1 AS a, 'x' AS b, NULL::int AS c"))
        local rows = {}
        for r in s:rows("map") do rows[#rows + 1] = r end
        assert.are.same({ { a = 1, b = "x", c = pgspout.null } }, rows)
    end)

    it("gives JSON text rows in json mode", function()
        local s = assert(conn:stream([[SELECT 1 AS a, 'x"y' AS b, NULL::int AS c, true AS d,
                                             '{"k":[1]}'::jsonb AS e, 1.50::numeric AS f]]))
        local rows = {}
        for r in s:rows("json") do rows[#rows + 1] = r end
        assert.are.same({ '{"a":1,"b":"x\\"y","c":null,"d":true,"e":{"k": [1]},"f":1.50}' }, rows)
    end)

    it("renders composites, domains, enums as row_to_json with rows = \"json\"", function()
        -- the option rows = "json" sets the core's option json: the types
        -- are looked up before the statement runs (an anonymous record is
        -- rendered by the server: the query runs as a subquery); the JSON
        -- text is the server's own row_to_json, byte for byte
        H.query("CREATE TYPE pgs_lua_mood AS ENUM ('ok', 'a \"q\"')", nil, nil, conn)
        H.query("CREATE DOMAIN pgs_lua_pos AS int4 CHECK (VALUE > 0)", nil, nil, conn)
        H.query("CREATE TYPE pgs_lua_c AS (m pgs_lua_mood, p pgs_lua_pos[], t text, ts timestamp)",
                nil, nil, conn)
        local sql = [[SELECT ROW('a "q"', ARRAY[g, NULL], 'x, (y)', '2024-01-02 03:04:05.5')::pgs_lua_c AS c,
                             ARRAY[ROW('ok', NULL, NULL, NULL)::pgs_lua_c, NULL] AS cs,
                             ARRAY['ok'::pgs_lua_mood] AS ms, a AS am,
                             ROW(g, 'x y', NULL) AS rec
                      FROM generate_series(1, 3) g, pg_am a WHERE a.amname = 'heap']]
        local ok, err = pcall(function()
            local ours = {}
            local s = assert(conn:stream(sql, nil, { rows = "json" }))
            for r in s:rows() do ours[#ours + 1] = r end
            local theirs = {}
            for _, r in ipairs(H.query("SELECT row_to_json(q)::text FROM (" .. sql .. ") q",
                                       nil, nil, conn)) do
                theirs[#theirs + 1] = r[1]
            end
            assert.are.equal(3, #ours)
            assert.are.same(theirs, ours)
            -- without the option, rows("json") names it rather than guess
            s = assert(conn:stream(sql))
            local okj, raised = pcall(function() for _ in s:rows("json") do end end)
            assert.is_false(okj)
            assert.matches("option json", raised, 1, true)
            s:close()
        end)
        H.query("DROP TYPE pgs_lua_c, pgs_lua_mood", nil, nil, conn)
        H.query("DROP DOMAIN pgs_lua_pos", nil, nil, conn)
        assert(ok, err)
    end)

    it("describes columns", function()
        local s = assert(conn:stream("SELECT 1::int4 AS a, 'x'::text AS b, '{}'::jsonb AS c"))
        local names, types = s:columns()
        assert.are.same({ "a", "b", "c" }, names)
        assert.are.same({ 23, 25, 3802 }, types)
        s:close()
    end)
    it("gives the same values in binary (option binary) as in text", function()
        -- every type option binary takes, edges mixed in (BC, year > 9999,
        -- infinity, 24:00:00, offsets with seconds, NaN, 2^53 and beyond)
        H.query("SET TimeZone = 'UTC'", nil, nil, conn)
        local sql = [[
            WITH g AS (SELECT g, hashint8extended(g, 5) AS h FROM generate_series(1, 3000) g)
            SELECT (h % 32768)::int2, h, (h % 9007199254740993)::int8, g % 3 = 0,
              CASE g % 97 WHEN 0 THEN 'NaN' WHEN 1 THEN '-Infinity'
                ELSE (h % 1000000007)::float8 / 7 * 10::float8 ^ (g % 580 - 300) END,
              CASE g % 89 WHEN 0 THEN 'NaN'
                ELSE round(h::numeric / 10::numeric ^ (g % 40), g % 25) END,
              CASE WHEN g % 50 = 0 THEN NULL ELSE md5(g::text) || ' é' END,
              md5(g::text)::uuid, jsonb_build_object('g', g, 'a', jsonb_build_array(g, null)),
              json_build_object('g', g),
              CASE g % 41 WHEN 0 THEN 'infinity' ELSE date '2000-01-01' + (h % 2400000)::int END,
              CASE g % 31 WHEN 0 THEN '24:00:00'
                ELSE time '00:00' + make_interval(secs => abs(h % 86400000000) / 1e6) END,
              ('12:34:56.5' || (ARRAY['+05:30', '-03:00:15'])[g % 2 + 1])::timetz,
              timestamp '2000-01-01' + make_interval(secs => (h % 207360000000000000) / 1e6),
              timestamptz '2000-01-01 00:00+00' + make_interval(secs => (h % 207360000000000000) / 1e6)
            FROM g]]
        local text, binary = {}, {}
        local t = assert(conn:stream(sql))
        for r in t:rows() do text[#text + 1] = r end
        assert.is_false(t:binary())
        t:close()
        local b = assert(conn:stream(sql, nil, { binary = true }))
        for r in b:rows() do binary[#binary + 1] = r end
        assert.is_true(b:binary())
        b:close()
        assert.are.equal(3000, #binary)
        for i, row in ipairs(text) do
            for c, v in ipairs(row) do
                local w = binary[i][c]
                if v ~= v then
                    assert.is_true(w ~= w, i .. ":" .. c)
                else
                    assert.are.equal(v, w, i .. ":" .. c)
                end
            end
        end
        H.query("RESET TimeZone", nil, nil, conn)
    end)

    it("refuses JSON rows of a binary stream, saying why", function()
        local s = assert(conn:stream("SELECT 1", nil, { binary = true }))
        local ok, raised = pcall(function() for _ in s:rows("json") do end end)
        assert.is_false(ok)
        assert.matches("pgspout: estate: ", raised, 1, true)
        assert.matches("option binary", raised, 1, true)
        -- the rows it took are lost: the stream ended there, failed, and
        -- says so again; the connection is free for the next stream
        assert.are.equal("failed", s:state())
        local rows, err, code = s:chunk()
        assert.is_nil(rows)
        assert.are.equal("estate", code)
        assert.matches("option binary", err, 1, true)
        s:close()
        assert.are.same({ { 42 } }, H.query("SELECT 42", nil, nil, conn))
    end)
end)
