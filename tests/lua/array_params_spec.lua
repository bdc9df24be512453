-- Sequence tables are PostgreSQL arrays; pgspout.json(v) sends JSON. Every
-- check compares with what the server computes from the parameter
-- (element-wise equality against scalar parameters, array_length,
-- md5 of array_to_string, array_to_json), not only with what comes back.
local H = require "helper"
local pgspout = H.pgspout
local null = pgspout.null

local NASTY = { 'plain', 'with "quotes"', 'back\\slash', 'a,b', '{braces}', '}', '{', ' lead',
    'trail ', '  ', '\ttab', 'new\nline', 'NULL', 'null', '', '"', '\\', '\\"', '"\\', "it's",
    'é ✓ 日本', '{"a": 1}', 'x\\"y', '\\N', ',', ' , ', 'NULLx', '"NULL"' }

local function placeholders(from, n, cast)
    local t = {}
    for k = from, from + n - 1 do t[#t + 1] = ("$%d::%s"):format(k, cast) end
    return table.concat(t, ", ")
end

describe("array parameters", function()
    local conn
    setup(function() conn = assert(pgspout.connect(H.dsn)) end)
    teardown(function() conn:close() end)

    local function one(sql, params) return H.query(sql, params, nil, conn)[1] end

    it("sends int arrays, usable with ANY($1)", function()
        assert.are.same({ true, 3, 1, "{1,-2,2147483647}" },
            one("SELECT $1::int[] = ARRAY[1, -2, 2147483647], array_length($1::int[], 1), " ..
                "array_ndims($1::int[]), $1::int[]::text", { { 1, -2, 2147483647 } }))
        assert.are.same({ 3 }, one("SELECT count(*)::int FROM generate_series(1, 10) g WHERE g = ANY($1)",
                                   { { 2, 3, 5 } }))
        -- integers beyond 2^31 exactly, floats by their shortest digits
        assert.are.same({ true, true }, one("SELECT $1::int8[] = ARRAY[9007199254740992, -4294967296]::int8[], " ..
                                            "$2::float8[] = ARRAY[0.1, -2.5e-10, 1e300]::float8[]",
                                            { { 2 ^ 53, -2 ^ 32 }, { 0.1, -2.5e-10, 1e300 } }))
    end)

    it("sends nested tables as multi-dimensional arrays, with NULLs", function()
        assert.are.same({ true, "[1:2][1:3]", 6 },
            one("SELECT $1::int[][] = ARRAY[[1, 2, 3], [4, 5, 6]], array_dims($1::int[][]), ($1::int[][])[2][3]",
                { { { 1, 2, 3 }, { 4, 5, 6 } } }))
        assert.are.same({ "[1:2][1:2][1:2]", true, 8, true },
            one("SELECT array_dims($1::int[]), ($1::int[])[1][1][2] IS NULL, ($1::int[])[2][2][2], " ..
                "$1::int[] IS NOT DISTINCT FROM ARRAY[[[1, NULL], [3, 4]], [[5, 6], [NULL, 8]]]",
                { { { { 1, null }, { 3, 4 } }, { { 5, 6 }, { n = 2, nil, 8 } } } }))
    end)

    it("quotes every text element exactly", function()
        local n = #NASTY
        local params = { NASTY }
        for i = 1, n do params[i + 1] = NASTY[i] end
        params[n + 2] = table.concat(NASTY, "\1")
        local row = one(("SELECT $1::text[] = ARRAY[%s], array_length($1::text[], 1), " ..
                         "md5(array_to_string($1::text[], chr(1), chr(2))) = md5($%d), " ..
                         "array_to_json($1::text[])::jsonb = to_jsonb(ARRAY[%s])")
                        :format(placeholders(2, n, "text"), n + 2, placeholders(2, n, "text")), params)
        assert.are.same({ true, n, true, true }, row)
        -- element by element, as the server sees them
        local rows = H.query("SELECT e FROM unnest($1::text[]) WITH ORDINALITY AS t(e, i) ORDER BY i",
                             { NASTY }, nil, conn)
        for i = 1, n do assert.are.equal(NASTY[i], rows[i][1]) end
    end)

    it("tells NULL elements from the word NULL and empty strings", function()
        assert.are.same({ 5, true, true, true, true, "null", "<null>|NULL||<null>|null" },
            one("SELECT cardinality($1::text[]), ($1::text[])[1] IS NULL, ($1::text[])[2] = 'NULL', " ..
                "($1::text[])[3] = '', ($1::text[])[4] IS NULL, ($1::text[])[5], " ..
                "array_to_string($1::text[], '|', '<null>')",
                { { null, "NULL", "", null, "null" } }))
        -- nil holes count with t.n
        assert.are.same({ 3, true }, one("SELECT cardinality($1::text[]), ($1::text[])[2] IS NULL",
                                         { { n = 3, "a", nil, "c" } }))
    end)

    it("sends numeric, date, uuid, bool and bytea arrays", function()
        assert.are.same({ true, "1.50", true },
            one("SELECT $1::numeric[] IS NOT DISTINCT FROM ARRAY[1.50, -1e-30, " ..
                "123456789012345678901234567890.123456789, 'NaN', 7, NULL]::numeric[], " ..
                "($1::numeric[])[1]::text, ($1::numeric[])[4] = 'NaN'::numeric",
                { { "1.50", "-1e-30", "123456789012345678901234567890.123456789", "NaN", 7, null } }))
        assert.are.same({ true }, one("SELECT $1::date[] = ARRAY[make_date(2024, 2, 29), make_date(1, 1, 1)]",
                                      { { "2024-02-29", "0001-01-01" } }))
        local u = { "00000000-0000-0000-0000-000000000007", "12345678-1234-5678-1234-567812345678" }
        assert.are.same({ true }, one("SELECT $1::uuid[] = ARRAY[$2::uuid, $3::uuid]", { u, u[1], u[2] }))
        assert.are.same({ true, true, false },
            one("SELECT $1::bool[] IS NOT DISTINCT FROM ARRAY[true, false, NULL], ($1::bool[])[1], ($1::bool[])[2]",
                { { true, false, null } }))
        -- bytea as hex text: the backslash of \x survives the array quoting
        local hex = { "\\x", "\\x0001ff", "\\x5c227b7d2c" }
        assert.are.same({ true, true },
            one("SELECT $1::bytea[] = ARRAY[$2::bytea, $3::bytea, $4::bytea], " ..
                "(SELECT string_agg(md5(e), ',' ORDER BY i) FROM unnest($1::bytea[]) WITH ORDINALITY t(e, i)) = " ..
                "md5(''::bytea) || ',' || md5('\\x0001ff'::bytea) || ',' || md5('\\x5c227b7d2c'::bytea)",
                { hex, hex[1], hex[2], hex[3] }))
    end)

    it("sends an empty table as the empty array", function()
        assert.are.same({ 0, true, true, true },
            one("SELECT cardinality($1::int[]), $1::int[] = '{}', $2::text[] = '{}', $3::int[] = '{}'",
                { {}, { n = 0 }, { {}, {} } }))
    end)

    it("sends JSON with pgspout.json", function()
        local row = one("SELECT $1::jsonb = '[1, \"a\", null, {\"b\": [true, 2.5]}]'::jsonb, jsonb_typeof($1::jsonb), " ..
                        "$2::jsonb = '{\"k\": [1, 2], \"s\": \"q\\\"\\\\\\n\\u0001\"}'::jsonb, $3::text, $4::text, $5::text",
            { pgspout.json({ 1, "a", null, { b = { true, 2.5 } } }),
              pgspout.json({ k = { 1, 2 }, s = 'q"\\\n\1' }),
              pgspout.json({}), pgspout.json({ n = 0 }), pgspout.json({ z = 1, a = { 1, 2 }, [3] = "x" }) })
        assert.are.same({ true, "array", true, "{}", "[]", '{"3":"x","a":[1,2],"z":1}' }, row)
        -- JSON elements of a jsonb[]
        assert.are.same({ true }, one("SELECT $1::jsonb[] = ARRAY['{\"a\": 1}'::jsonb, '[2]'::jsonb]",
                                      { { pgspout.json({ a = 1 }), pgspout.json({ 2 }) } }))
        for _, bad in ipairs({ 0 / 0, 1 / 0, function() end, { [true] = 1 }, io.stdout }) do
            assert.has_error(function() pgspout.json(bad) end)
        end
        local cyc = {}
        cyc[1] = cyc
        assert.has_error(function() pgspout.json(cyc) end, "pgspout.json: nested deeper than 100 tables (a cycle?)")
    end)

    it("works for registry streams", function()
        local id = assert(pgspout.registry_open(H.dsn, "SELECT g FROM unnest($1::int[]) g", { { 3, 1, 2 } }))
        local text = assert(pgspout.registry_fetch(id))
        assert.are.equal('{"g":3}\n{"g":1}\n{"g":2}\n', text)
        pgspout.registry_close(id)
    end)

    it("refuses ragged arrays, maps and too many dimensions", function()
        local cases = {
            { { { 1, 2 }, { 3 } }, "bad parameter #1[2] (ragged array: a table of 1 elements where the first at this depth has 2" },
            { { { 1, 2 }, 3 }, "bad parameter #1[2] (ragged array: a value where the first element at this depth is a table" },
            { { 1, { 2 } }, "bad parameter #1[2] (ragged array: a table where the first element at this depth is a value" },
            { { { 1 }, null }, "bad parameter #1[2] (ragged array: a value where" },
            { { 1, { a = 1 } }, "ragged array" },
            { { { a = 1 } }, "bad parameter #1[1] (a table that is not a sequence" },
            { { 1, 2, x = 3 }, "bad parameter #1 (a table that is not a sequence" },
            { { { { { { { { 1 } } } } } } }, "more than 6 dimensions" },
            { { "a", function() end }, "bad parameter #1[2] (string, number, boolean, pgspout.null or a table expected, got function)" },
        }
        for i, c in ipairs(cases) do
            local ok, err = pcall(conn.stream, conn, "SELECT $1::int[]", { c[1] })
            assert.is_false(ok, "case " .. i)
            assert.truthy(err:find(c[2], 1, true), "case " .. i .. ": " .. tostring(err))
        end
        local ok, err = pcall(conn.stream, conn, "SELECT $1::text[]", { 1, { "a\0b" } })
        assert.is_false(ok)
        assert.truthy(err:find("parameter #2[1] contains a NUL byte", 1, true), err)
        assert.are.same({ 1 }, one("SELECT 1"))
    end)
end)
