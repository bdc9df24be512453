"""JSON rows (rows="json", the C library's pgspout_row_json and the CLI's
NDJSON) equal PostgreSQL's own row_to_json of the same row: for every
built-in scalar type and arrays of them, composites (nested, in arrays,
table row types with dropped columns), domains, enums, ranges and
multiranges, arrays with any lower bounds - many generated values each,
pgspout's JSON parsed and compared with the server's parsed (numbers by
their exact digits). What cannot be equal (anonymous records, anyarray,
types with a cast to json) is the value's text, and is tested as such."""
import decimal
import json
import logging
import re

import pytest

import pgspout

# (name, SQL expression of g) - each yields many distinct values, edges mixed in
TYPES = [
    ("int2", "(hashint4(g) % 32768)::int2"),
    ("int4", "hashint4(g)"),
    ("int8", "hashint8extended(g, 1)"),
    ("float4", "(CASE g % 50 WHEN 0 THEN 'NaN' WHEN 1 THEN '-Infinity' ELSE hashint4(g)::float4 / 7 END)::float4"),
    ("float8", "CASE g % 50 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' ELSE hashint8extended(g, 2)::float8 / 7 * 10::float8 ^ (g % 200 - 100) END"),
    ("numeric", "CASE g % 50 WHEN 0 THEN 'NaN' ELSE round(hashint8extended(g, 3)::numeric / 10::numeric ^ (g % 30), g % 12) END"),
    ("bool", "g % 3 = 0"),
    ("text", "md5(g::text) || E' \\\\ \" \\n \\t é ' || chr(1 + g % 30)"),
    ("bytea", "decode(md5(g::text), 'hex')"),
    ("date", "CASE g % 97 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity' ELSE date '2000-01-01' + (hashint4(g) % 1000000) END"),
    ("time", "time '00:00' + make_interval(secs => abs(hashint8extended(g, 4) % 86400000000) / 1e6)"),
    ("timetz", "((time '00:00' + make_interval(secs => abs(hashint4(g) % 86400))) || (ARRAY['+05:30', '-08', '+00'])[g % 3 + 1])::timetz"),
    ("timestamp", "CASE g % 97 WHEN 0 THEN 'infinity' ELSE timestamp '2000-01-01' + make_interval(secs => (hashint8extended(g, 5) % 80000000000000000) / 1e6) END"),
    ("timestamptz", "CASE g % 97 WHEN 0 THEN '-infinity' ELSE timestamptz '2000-01-01 00:00+00' + make_interval(secs => (hashint8extended(g, 6) % 80000000000000000) / 1e6) END"),
    ("interval", "make_interval(months => g % 30, days => g % 40, secs => hashint4(g) / 1000.0)"),
    ("uuid", "md5(g::text)::uuid"),
    ("json", "json_build_object('g', g, 's', md5(g::text), 'a', json_build_array(g, null, 'x'))"),
    ("jsonb", "jsonb_build_object('g', g, 'n', g / 7.0, 'nested', jsonb_build_object('k', ARRAY[g]))"),
    ("range", "int4range(g, g + abs(hashint4(g) % 100) + 1)"),
    ("multirange", "int4multirange(int4range(g, g + 2), int4range(g + 5 + g % 3, NULL))"),
    ("tsrange", "tsrange(timestamp '2020-01-01' + g * interval '1 min', NULL, '(]')"),
    ("oid", "(hashint4(g)::int8 + 2147483648)::oid"),
    ("point", "point(g / 3.0, -g)"),
    ("box", "box(point(g, -g), point(g / 7.0, 0))"),
    ("inet", "('10.' || g % 256 || '.' || g / 256 % 256 || '.1/' || 8 + g % 25)::inet"),
    ("bit", "(g % 256)::bit(8)"),
    ("money", "(g * 1.25)::money"),
    ("int2vector", "(g % 100 || ' ' || -(g % 7) || ' 3')::int2vector"),
    ("oidvector", "(g || ' ' || g * 2)::oidvector"),
    ("char", "chr(65 + g % 26)::\"char\""),
]
ARRAYS = [  # element expressions made into 1-D and 2-D arrays, NULLs and bounds included
    "int4", "int8", "float8", "numeric", "bool", "text", "date", "timestamp", "timestamptz",
    "uuid", "jsonb", "json", "interval", "range", "multirange", "oid", "point", "box", "inet",
    "bit", "money", "int2vector", "oidvector",
]


def shift(expr, by):
    """expr with g replaced by (g + by)."""
    return re.sub(r"\bg\b", "(g + %d)" % by, expr)


def exact(text):
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def compare(conn, select, rows, zone, sql=None, ref=None, **options):
    """select over g in 1..rows (or the statement sql), rows="json" against
    row_to_json of the same rows (of ref when given), parsed."""
    list(conn.stream("SET TimeZone = '%s'" % zone))
    if sql is None:
        sql = "WITH g AS (SELECT g FROM generate_series(1, %d) g) SELECT %s FROM g" % (rows, select)
    ours = [exact(r) for r in conn.stream(sql, rows="json", **options)]
    theirs = [exact(r) for (r,) in conn.stream(
        "SELECT row_to_json(pgs_q)::text FROM (%s) pgs_q" % (ref or sql))]
    assert len(ours) == len(theirs) == (rows if rows else len(theirs)) > 0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, (i, a, b)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_scalars_equal_row_to_json(conn, zone):
    select = ", ".join("%s AS %s" % (expr, name) for name, expr in TYPES)
    compare(conn, select, 3000, zone)


def test_arrays_equal_row_to_json(conn):
    exprs = dict(TYPES)
    cols = []
    for name in ARRAYS:
        e = exprs[name]
        cols.append("ARRAY[%s, NULL, %s] AS a1_%s" % (e, shift(e, 1), name))
        cols.append("ARRAY[ARRAY[%s, NULL], ARRAY[NULL, %s]] AS a2_%s" % (e, shift(e, 2), name))
    cols += ["'[0:1]={x,y}'::text[] AS bounds", "'{}'::int[] AS empty",
             "ARRAY[ARRAY[]::int[]] AS empty2", "ARRAY['NULL', '', ' a ', '{b}', 'c,d'] AS quoted"]
    compare(conn, ", ".join(cols), 500, "Asia/Kolkata")


def test_enum_and_domain_over_text(conn):
    list(conn.stream("DROP TYPE IF EXISTS pgs_mood CASCADE"))
    list(conn.stream("DROP DOMAIN IF EXISTS pgs_name"))
    list(conn.stream("CREATE TYPE pgs_mood AS ENUM ('sad', 'ok', 'ha\"ppy')"))
    list(conn.stream("CREATE DOMAIN pgs_name AS text CHECK (VALUE <> '')"))
    try:
        compare(conn, "(enum_range(NULL::pgs_mood))[g % 3 + 1] AS m, "
                      "md5(g::text)::pgs_name AS n", 10, "UTC")
    finally:
        list(conn.stream("DROP TYPE pgs_mood"))
        list(conn.stream("DROP DOMAIN pgs_name"))


def test_arrays_with_lower_bounds(conn):
    """array_to_json drops the bounds ("[-2:0]={1,NULL,3}" -> [1,null,3]),
    in any dimension, inside composites too: pgspout drops them as well."""
    exprs = dict(TYPES)
    cols = []
    for name in ["int4", "text", "timestamptz", "jsonb", "numeric", "range", "box"]:
        e = exprs[name]
        one = "ARRAY[%s, NULL, %s]" % (e, shift(e, 1))
        cols.append("('[' || (g %% 7 - 3) || ':' || (g %% 7 - 1) || ']=' || %s::text)::%s[] AS b1_%s"
                    % (one, pg_type(name), name))
        two = "ARRAY[ARRAY[%s, %s], ARRAY[NULL, %s]]" % (e, shift(e, 2), e)
        cols.append("('[' || (g %% 5) || ':' || (g %% 5 + 1) || '][-1:0]=' || %s::text)::%s[] AS b2_%s"
                    % (two, pg_type(name), name))
    compare(conn, ", ".join(cols), 300, "Europe/Paris")


def pg_type(name):
    return {"range": "int4range", "multirange": "int4multirange"}.get(name, name)


# ------------------------------------------------------------ user types

SETUP = """
DROP TABLE IF EXISTS pgs_jr_tbl;
DROP TYPE IF EXISTS pgs_jr_outer, pgs_jr_inner, pgs_jr_mood, pgs_jr_frange CASCADE;
DROP DOMAIN IF EXISTS pgs_jr_pos2, pgs_jr_pos, pgs_jr_num, pgs_jr_flag, pgs_jr_when, pgs_jr_doc,
    pgs_jr_ints, pgs_jr_cdom CASCADE;
CREATE TYPE pgs_jr_mood AS ENUM ('sad', 'ok', 'ha"ppy', 'with space', 'a,b');
CREATE TYPE pgs_jr_frange AS RANGE (subtype = float8);
CREATE DOMAIN pgs_jr_pos AS int4 CHECK (VALUE > 0);
CREATE DOMAIN pgs_jr_pos2 AS pgs_jr_pos;
CREATE DOMAIN pgs_jr_num AS numeric(20, 4);
CREATE DOMAIN pgs_jr_flag AS bool;
CREATE DOMAIN pgs_jr_when AS timestamptz;
CREATE DOMAIN pgs_jr_doc AS jsonb;
CREATE DOMAIN pgs_jr_ints AS int4[];
CREATE TYPE pgs_jr_inner AS (i int4, t text, ts timestamptz, n numeric, b bool, j jsonb,
    a int4[], d date, "we""ird, key" text);
CREATE DOMAIN pgs_jr_cdom AS pgs_jr_inner;
CREATE TYPE pgs_jr_outer AS (inner_ pgs_jr_inner, inners pgs_jr_inner[], pos pgs_jr_pos,
    mood pgs_jr_mood, moods pgs_jr_mood[], r int4range, fr pgs_jr_frange, f float8,
    e text, cd pgs_jr_cdom, ts timestamp, vec int2vector);
"""

# text values that need quoting everywhere: quotes, backslashes, commas,
# parentheses, braces, spaces, newlines, the empty string, non-ASCII
NASTY = ("CASE g % 6 WHEN 0 THEN '' WHEN 1 THEN 'NULL' "
         "ELSE md5(g::text) || E' \\\\ \" ( ) { } , ; \\n é ' || chr(33 + g % 90) END")


def inner(g):
    return ("CASE WHEN %(g)s %% 13 = 0 THEN NULL ELSE ROW(hashint4(%(g)s), %(t)s, "
            "timestamptz '2000-01-01 00:00+00' + make_interval(secs => (hashint8extended(%(g)s, 6)"
            " %% 8000000000000000) / 1e6), round(hashint8extended(%(g)s, 3)::numeric / 1000, %(g)s %% 5),"
            " CASE WHEN %(g)s %% 4 = 0 THEN NULL ELSE %(g)s %% 3 = 0 END,"
            " jsonb_build_object('k', %(g)s, 's', md5(%(g)s::text), 'a', jsonb_build_array(%(g)s, null)),"
            " ARRAY[%(g)s, NULL, -%(g)s], date '2000-01-01' + %(g)s * 37,"
            " CASE WHEN %(g)s %% 5 = 0 THEN NULL ELSE md5(%(g)s::text) END)::pgs_jr_inner END"
            % {"g": g, "t": NASTY.replace("g", g)})


def outer(g):
    return ("ROW(%(i1)s, ARRAY[%(i2)s, NULL, %(i3)s], %(g)s %% 50 + 1, "
            "(enum_range(NULL::pgs_jr_mood))[%(g)s %% 5 + 1], "
            "ARRAY[(enum_range(NULL::pgs_jr_mood))[%(g)s %% 5 + 1], NULL, 'a,b'], "
            "int4range(%(g)s, %(g)s + 10), pgs_jr_frange(%(g)s / 3.0, NULL), "
            "CASE %(g)s %% 9 WHEN 0 THEN 'NaN' WHEN 1 THEN '-Infinity' ELSE %(g)s / 7.0 END, "
            "%(t)s, %(i4)s, timestamp '2020-02-02 02:02:02.5' + %(g)s * interval '1 hour', "
            "(%(g)s %% 9 || ' ' || %(g)s %% 4)::int2vector)::pgs_jr_outer"
            % {"g": g, "i1": inner(g), "i2": inner("(%s + 1)" % g), "i3": inner("(%s + 2)" % g),
               "i4": inner("(%s + 3)" % g), "t": NASTY.replace("g", "(%s + 5)" % g)})


@pytest.fixture
def types(conn):
    for stmt in SETUP.split(";"):
        if stmt.strip():
            list(conn.stream(stmt))
    yield
    list(conn.stream("DROP TABLE IF EXISTS pgs_jr_tbl"))
    list(conn.stream("DROP TYPE pgs_jr_outer, pgs_jr_inner, pgs_jr_mood, pgs_jr_frange CASCADE"))
    list(conn.stream("DROP DOMAIN pgs_jr_pos2, pgs_jr_pos, pgs_jr_num, pgs_jr_flag, pgs_jr_when, "
                     "pgs_jr_doc, pgs_jr_ints CASCADE"))


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_composites_equal_row_to_json(conn, types, zone):
    """Named composites: nested, arrays of them (NULL elements and NULL
    fields), fields of every kind (timestamps in the session's zone, json,
    arrays, enums, ranges, domains over composites), quoted field names."""
    compare(conn, "%s AS i, %s AS o, ARRAY[%s, NULL] AS os" % (inner("g"), outer("g"),
                                                               outer("(g + 7)")), 400, zone)


def test_domains_enums_ranges_equal_row_to_json(conn, types):
    cols = [
        "(g %% 1000 + 1)::pgs_jr_pos AS pos", "(g %% 1000 + 1)::pgs_jr_pos2 AS pos2",
        "(hashint8extended(g, 1)::numeric / 10000)::pgs_jr_num AS num",
        "(g %% 3 = 0)::pgs_jr_flag AS flag",
        "(timestamptz '2001-02-03 04:05:06.789+00' + g * interval '37 min')::pgs_jr_when AS at",
        "jsonb_build_object('g', g, 'x', ARRAY[g])::pgs_jr_doc AS doc",
        "ARRAY[g, NULL, g * 2]::pgs_jr_ints AS ints",
        "ARRAY[(g %% 9 + 1)::pgs_jr_pos, NULL] AS pos_arr",
        "ARRAY[ARRAY[(g %% 9 + 1)::pgs_jr_pos2], ARRAY[NULL::pgs_jr_pos2]] AS pos2_arr2",
        "(enum_range(NULL::pgs_jr_mood))[g %% 5 + 1] AS mood",
        "ARRAY[(enum_range(NULL::pgs_jr_mood))[g %% 5 + 1], 'with space', NULL] AS moods",
        "pgs_jr_frange(g / 7.0, g + 0.5) AS fr",
        "pgs_jr_fmultirange(pgs_jr_frange(g, g + 1), pgs_jr_frange(g + 3, NULL)) AS fmr",
        "ARRAY[pgs_jr_frange(g, g + 1), 'empty'] AS frs",
        "%s::pgs_jr_cdom AS cdom" % inner("g"),
        "ARRAY[%s::pgs_jr_cdom] AS cdoms" % inner("(g + 1)"),
        "('[3:4]={' || g || ',' || -g || '}')::pgs_jr_ints AS bounded_dom",
    ]
    compare(conn, ", ".join(c.replace("%%", "%") for c in cols), 500, "America/St_Johns")


def test_table_rows_with_dropped_columns(conn, types):
    """A table's row type (whole-row references, SELECT *), after a column
    was dropped and another added."""
    list(conn.stream("CREATE TABLE pgs_jr_tbl (id int, gone text, inners pgs_jr_inner[], "
                     "m pgs_jr_mood)"))
    list(conn.stream("ALTER TABLE pgs_jr_tbl DROP COLUMN gone"))
    list(conn.stream("ALTER TABLE pgs_jr_tbl ADD COLUMN added pgs_jr_outer"))
    list(conn.stream("INSERT INTO pgs_jr_tbl SELECT g, ARRAY[%s], 'ok', %s "
                     "FROM generate_series(1, 300) g" % (inner("g"), outer("g"))))
    compare(conn, None, 0, "UTC",
            sql="SELECT t AS whole, t.inners, ARRAY[t] AS arr FROM pgs_jr_tbl t ORDER BY id")
    compare(conn, None, 0, "UTC", sql="SELECT * FROM pgs_jr_tbl ORDER BY id")


def test_catalog_row_types(conn):
    """The catalogs' own row types and the information_schema domains
    (OIDs assigned by initdb: the catalog describes them too)."""
    compare(conn, None, 0, "UTC",
            sql="SELECT a, ARRAY[a] AS arr, ARRAY[a.amname::information_schema.sql_identifier] "
                "AS idents, ARRAY[length(a.amname)::information_schema.cardinal_number] AS cards "
                "FROM pg_am a ORDER BY oid")
    compare(conn, None, 0, "UTC", sql="SELECT t FROM pg_type t WHERE oid < 30 ORDER BY oid")


def test_altered_type_is_looked_up_again(conn, types, caplog):
    """A composite's fields are read by every stream that renders one
    (ALTER TYPE changes them under the same OID); an array of a domain, an
    enum is looked up once per connection. (A column of a domain type comes
    as its base type: the server describes it so.)"""
    caplog.set_level(logging.DEBUG, logger="pgspout")
    sql = "SELECT ROW(1, 'x', timestamptz '2001-01-01 10:00+03', 1.5, true, '{}', '{}', '2000-01-01', 'k')::pgs_jr_inner AS c"
    looked = lambda: [r for r in caplog.records if "looking up" in r.getMessage()]
    compare(conn, "(g % 9 + 1)::pgs_jr_pos AS p", 3, "UTC")
    assert looked() == []  # described as int4
    compare(conn, "ARRAY[(g % 9 + 1)::pgs_jr_pos] AS p", 3, "UTC")
    assert len(looked()) == 1
    caplog.clear()
    compare(conn, "ARRAY[(g % 9 + 1)::pgs_jr_pos] AS p, 'ok'::pgs_jr_mood AS m", 3, "UTC")
    assert len(looked()) == 1  # the enum is new
    caplog.clear()
    compare(conn, "ARRAY[(g % 9 + 1)::pgs_jr_pos] AS p, 'ok'::pgs_jr_mood AS m", 3, "UTC")
    assert looked() == []  # the connection knows both
    compare(conn, "%s AS c" % inner("g"), 3, "UTC")
    compare(conn, "%s AS c" % inner("g"), 3, "UTC")
    assert len(looked()) == 2  # the composite's fields, each time
    (before,) = [json.loads(r) for r in conn.stream(sql, rows="json")]
    assert sorted(before["c"]) == sorted(["i", "t", "ts", "n", "b", "j", "a", "d", 'we"ird, key'])
    list(conn.stream("ALTER TYPE pgs_jr_inner RENAME ATTRIBUTE t TO renamed"))
    list(conn.stream("ALTER TYPE pgs_jr_inner DROP ATTRIBUTE b"))
    list(conn.stream("ALTER TYPE pgs_jr_inner ADD ATTRIBUTE z pgs_jr_pos"))
    sql = "SELECT ROW(1, 'x', timestamptz '2001-01-01 10:00+03', 1.5, '{}', '{}', '2000-01-01', 'k', 3)::pgs_jr_inner AS c"
    (after,) = [exact(r) for r in conn.stream(sql, rows="json")]
    (theirs,) = [exact(r) for (r,) in conn.stream("SELECT row_to_json(q)::text FROM (%s) q" % sql)]
    assert after == theirs
    assert after["c"]["renamed"] == "x" and after["c"]["z"] == 3 and "b" not in after["c"]


def test_inside_a_transaction_and_nonblocking(dsn, conn, types):
    """The lookup runs inside the caller's transaction (it sees types created
    there) and on pgspout_stream_start's non-blocking path (pgspout.aio)."""
    list(conn.stream("BEGIN"))
    list(conn.stream("CREATE TYPE pgs_jr_tx AS (a pgs_jr_mood, b pgs_jr_pos)"))
    compare(conn, "ROW('ok', g)::pgs_jr_tx AS x, ARRAY[ROW('sad', 1)::pgs_jr_tx] AS xs", 20, "UTC")
    list(conn.stream("ROLLBACK"))

    import asyncio
    import pgspout.aio

    async def read():
        c = await pgspout.aio.connect(dsn)
        try:
            s = c.stream("SELECT %s AS o FROM generate_series(1, 50) g" % outer("g"), rows="json")
            async with s:
                return [exact(r) async for r in s]
        finally:
            c.close()
    ours = asyncio.run(read())
    theirs = [exact(r) for (r,) in conn.stream(
        "SELECT row_to_json(q)::text FROM (SELECT %s AS o FROM generate_series(1, 50) g) q"
        % outer("g"))]
    assert ours == theirs


# ------------------------------------------------ what cannot be row_to_json


def test_records_anyarray_and_casts_equal_row_to_json(conn, types, caplog):
    """Anonymous records (whose field names and types the result does not
    carry), anyarray (pg_stats: the element type is in the value only) and
    types with a function cast to json (which only the server can call): the
    statement runs as a subquery that passes those columns through the
    server's to_json, so they too equal row_to_json, nested in arrays and
    composites as well, with no warning. Statements with comments, trailing
    semicolons, quotes, parameters, WITH and VALUES keep their rows."""
    caplog.set_level(logging.WARNING, logger="pgspout")
    compare(conn, "g AS i, ROW(g, 'a b') AS r, ARRAY[ROW(g, 'a b'), NULL] AS rs, "
                  "(SELECT x FROM (SELECT g AS a) x) AS sub, json_each('{\"k\": 1}') AS je, "
                  "CASE WHEN g % 3 = 0 THEN NULL ELSE ROW(ROW(g), ARRAY[g]) END AS nest, "
                  "ROW(g)::text AS t", 40, "UTC")
    compare(conn, None, 0, "UTC", sql="/* a; */ SELECT ROW(1, 'it''s; -- no') AS r, $$;$$ AS d "
            "; -- done;", ref="SELECT ROW(1, 'it''s; -- no') AS r, $$;$$ AS d")
    for sql in [
                "WITH w AS (SELECT ROW(g, E'\\'') AS r FROM generate_series(1, 9) g) "
                "SELECT r, r AS \"r\"\"2\" FROM w ORDER BY r DESC",
                "VALUES (ROW(1), 2), (ROW(3), 4)",
                "(SELECT ROW(1) AS r) UNION ALL (SELECT ROW(2))",
                "SELECT ROW(1) AS \"?column?\", 2, ROW(3)"]:
        compare(conn, None, 0, "UTC", sql=sql)
    ours = [json.loads(r) for r in conn.stream("SELECT $1::int AS n, ROW($1::int + 1) AS r "
                                               "FROM generate_series(1, 3)", [7], rows="json")]
    assert ours == [{"n": 7, "r": {"f1": 8}}] * 3

    list(conn.stream("CREATE TEMP TABLE pgs_jr_stats AS SELECT g % 3 AS x FROM "
                     "generate_series(1, 300) g"))
    list(conn.stream("ANALYZE pgs_jr_stats"))
    compare(conn, None, 0, "UTC", sql="SELECT most_common_vals AS v, ROW(histogram_bounds) AS h "
            "FROM pg_stats WHERE tablename = 'pgs_jr_stats'")

    list(conn.stream("CREATE FUNCTION pgs_jr_mood_json(pgs_jr_mood) RETURNS json "
                     "LANGUAGE sql AS $$ SELECT json_build_object('mood', $1::text) $$"))
    list(conn.stream("CREATE CAST (pgs_jr_mood AS json) WITH FUNCTION pgs_jr_mood_json"
                     "(pgs_jr_mood)"))
    sql = "SELECT 'ok'::pgs_jr_mood AS m, ARRAY['sad'::pgs_jr_mood] AS ms"
    (row,) = [json.loads(r) for r in conn.stream(sql, rows="json")]
    assert row == {"m": {"mood": "ok"}, "ms": [{"mood": "sad"}]}
    compare(conn, None, 0, "UTC", sql=sql)
    assert not [r.getMessage() for r in caplog.records], "warned though every column is exact"


def test_records_of_statements_that_are_not_queries_are_their_text(conn, caplog):
    """Only a query can be a subquery: INSERT ... RETURNING, a WITH that
    modifies data, FETCH from a cursor keep such columns as their text, as a
    string, with a warning; their rows and effects are untouched, in or out
    of a transaction."""
    caplog.set_level(logging.WARNING, logger="pgspout")
    list(conn.stream("CREATE TEMP TABLE pgs_jr_ins (a int, b text)"))
    rows = [json.loads(r) for r in conn.stream(
        "INSERT INTO pgs_jr_ins VALUES (1, 'a b'), (2, NULL) RETURNING a, ROW(a, b) AS r",
        rows="json")]
    assert rows == [{"a": 1, "r": "(1,\"a b\")"}, {"a": 2, "r": "(2,)"}]
    assert any("anonymous record" in r.getMessage() for r in caplog.records)
    list(conn.stream("BEGIN"))
    rows = [json.loads(r) for r in conn.stream(
        "WITH d AS (DELETE FROM pgs_jr_ins WHERE a = 1 RETURNING *) SELECT ROW(a) AS r FROM d",
        rows="json")]
    assert rows == [{"r": "(1)"}]
    list(conn.stream("DECLARE pgs_jr_cur CURSOR FOR SELECT ROW(a, b) AS r FROM pgs_jr_ins"))
    assert [json.loads(r) for r in conn.stream("FETCH ALL FROM pgs_jr_cur", rows="json")] == [
        {"r": "(2,)"}]
    list(conn.stream("COMMIT"))
    assert list(conn.stream("SELECT a FROM pgs_jr_ins")) == [(2,)]


def test_without_option_json_only_builtin_types(conn, types):
    """json=False: the built-in types still render as row_to_json (no
    describe, no lookup); a column whose type needs the catalog makes the
    JSON rows fail (StateError naming the option), never a guess."""
    compare(conn, "g AS i, ARRAY[int4range(g, g + 1)] AS rs, '1 2'::int2vector AS v, "
                  "ARRAY[box(point(g, g), point(0, 0))] AS boxes", 50, "UTC", json=False)
    compare(conn, "(g %% 9 + 1)::pgs_jr_pos AS p" % (), 5, "UTC", json=False)  # as int4
    for sql in ["SELECT ARRAY[1::pgs_jr_pos] AS p", "SELECT 'ok'::pgs_jr_mood AS m",
                "SELECT a FROM pg_am a"]:
        with pytest.raises(pgspout.StateError, match="option json"):
            list(conn.stream(sql, rows="json", json=False))
        assert list(conn.stream(sql))  # tuples need no lookup
