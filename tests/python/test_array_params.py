"""List and tuple parameters are PostgreSQL arrays; pgspout.Json sends JSON.

Every check compares with what the server computed from the parameter
(element-wise equality against scalar parameters, array_length, md5 of
array_to_string, array_to_json), not only with what pgspout reads back.
"""
import datetime as dt
import hashlib
import json
import random
import uuid
from decimal import Decimal

import pytest

import pgspout

from conftest import one

NASTY = ['plain', 'with "quotes"', 'back\\slash', 'a,b', '{braces}', '}', '{', ' lead', 'trail ',
         '  ', '\ttab', 'new\nline', 'NULL', 'null', '', '"', '\\', '\\"', '"\\', "it's", 'é ✓ 日本',
         '{"a": 1}', 'x\\"y', '\\N', ',', ' , ', 'NULLx', '"NULL"']


def placeholders(start, n, cast):
    return ", ".join("$%d::%s" % (k, cast) for k in range(start, start + n))


def test_int_array_and_any(conn):
    row = one(conn, "SELECT $1::int[] = ARRAY[1, -2, 2147483647], array_length($1::int[], 1), "
                    "array_ndims($1::int[]), $1::int[]", [[1, -2, 2147483647]])
    assert row == (True, 3, 1, [1, -2, 2147483647])
    # the example: ANY($1) with and without a cast
    assert one(conn, "SELECT count(*)::int FROM generate_series(1, 10) g WHERE g = ANY($1)",
               [[2, 3, 5]]) == (3,)
    assert one(conn, "SELECT count(*)::int FROM generate_series(1, 10) g WHERE g = ANY($1::int[])",
               [(7,)]) == (1,)
    # int8 extremes and a tuple
    assert one(conn, "SELECT $1::int8[] = ARRAY[-9223372036854775808, 9223372036854775807]::int8[]",
               [(-9223372036854775808, 9223372036854775807)]) == (True,)


def test_two_dimensions(conn):
    v = [[1, 2, 3], [4, 5, 6]]
    row = one(conn, "SELECT $1::int[][] = ARRAY[[1, 2, 3], [4, 5, 6]], array_dims($1::int[][]), "
                    "($1::int[][])[2][3], $1::int[][]", [v])
    assert row == (True, "[1:2][1:3]", 6, v)
    # three dimensions, tuples and lists mixed, with NULLs
    v3 = [([1, None], [3, 4]), [(5, 6), [None, 8]]]
    row = one(conn, "SELECT array_dims($1::int[]), ($1::int[])[1][1][2] IS NULL, ($1::int[])[2][2][2], "
                    "$1::int[] IS NOT DISTINCT FROM ARRAY[[[1, NULL], [3, 4]], [[5, 6], [NULL, 8]]]", [v3])
    assert row == ("[1:2][1:2][1:2]", True, 8, True)


def test_text_nasty_strings(conn):
    n = len(NASTY)
    row = one(conn, "SELECT $1::text[] = ARRAY[%s], array_length($1::text[], 1), "
                    "md5(array_to_string($1::text[], chr(1), chr(2))), array_to_json($1::text[])::text"
              % placeholders(2, n, "text"), [NASTY] + NASTY)
    assert row[0] is True and row[1] == n
    assert row[2] == hashlib.md5("\x01".join(NASTY).encode()).hexdigest()
    assert json.loads(row[3]) == NASTY
    # element by element, as the server sees them
    got = list(conn.stream("SELECT i::int, e, e = ($2::text[])[i] FROM unnest($1::text[]) WITH ORDINALITY "
                           "AS t(e, i) ORDER BY i", [NASTY, list(NASTY)]))
    assert [r[1] for r in got] == NASTY and all(r[2] for r in got)


def test_text_null_elements_and_the_word_null(conn):
    v = [None, "NULL", "", None, "null"]
    row = one(conn, "SELECT cardinality($1::text[]), ($1::text[])[1] IS NULL, ($1::text[])[2] = 'NULL', "
                    "($1::text[])[3] = '', ($1::text[])[4] IS NULL, ($1::text[])[5], "
                    "array_to_string($1::text[], '|', '<null>')", [v])
    assert row == (5, True, True, True, True, "null", "<null>|NULL||<null>|null")


def test_text_random_strings(conn):
    rnd = random.Random(13)
    alphabet = ['"', "\\", ",", "{", "}", " ", "\t", "\n", "N", "U", "L", "a", "é", "'", ";", "\r"]
    for _ in range(30):
        dims = [rnd.randint(0, 4)] if rnd.random() < 0.6 else [rnd.randint(1, 3), rnd.randint(1, 3)]

        def build(d):
            if d == len(dims) - 1:
                return [None if rnd.random() < 0.1 else "".join(rnd.choice(alphabet)
                                                               for _ in range(rnd.randint(0, 6)))
                        for _ in range(dims[d])]
            return [build(d + 1) for _ in range(dims[d])]
        v = build(0)
        (text,) = one(conn, "SELECT array_to_json($1::text[])::text", [v])
        # array_to_json of an empty array is [], of any array the nested lists
        assert json.loads(text) == (v if dims[0] else [])


def test_numeric_array(conn):
    v = [Decimal("1.50"), Decimal("-1e-30"), Decimal("123456789012345678901234567890.123456789"),
         Decimal("NaN"), 7, None]
    n = len(v)
    row = one(conn, "SELECT $1::numeric[] IS NOT DISTINCT FROM ARRAY[%s], ($1::numeric[])[1]::text, "
                    "($1::numeric[])[4] = 'NaN'::numeric" % placeholders(2, n, "numeric"), [v] + v)
    assert row == (True, "1.50", True)


def test_float_and_bool_arrays(conn):
    row = one(conn, "SELECT $1::float8[] = ARRAY[0.1, -2.5e-10, 'Infinity', '-Infinity', 'NaN']::float8[], "
                    "$2::bool[] IS NOT DISTINCT FROM ARRAY[true, false, NULL]::bool[], ($2::bool[])[1], ($2::bool[])[2]",
              [[0.1, -2.5e-10, float("inf"), float("-inf"), float("nan")], [True, False, None]])
    assert row == (True, True, True, False)


def test_date_time_arrays(conn):
    dates = [dt.date(2024, 2, 29), dt.date(1, 1, 1), dt.date(9999, 12, 31)]
    tz = dt.timezone(dt.timedelta(hours=5, minutes=30))
    stamps = [dt.datetime(2024, 1, 31, 12, 34, 56, 789012, tzinfo=tz), dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)]
    row = one(conn, "SELECT $1::date[] = ARRAY[make_date(2024, 2, 29), make_date(1, 1, 1), make_date(9999, 12, 31)], "
                    "$2::timestamptz[] = ARRAY[$3::timestamptz, $4::timestamptz], "
                    "$5::time[] = ARRAY['01:02:03.000004'::time], "
                    "$6::interval[] = ARRAY['-1 days 00:00:05.000006'::interval, '0'::interval], "
                    "$7::timestamp[] = ARRAY['2024-01-31 01:02:03'::timestamp]",
              [dates, stamps] + stamps + [[dt.time(1, 2, 3, 4)],
                                         [dt.timedelta(days=-1, seconds=5, microseconds=6), dt.timedelta(0)],
                                         [dt.datetime(2024, 1, 31, 1, 2, 3)]])
    assert row == (True, True, True, True, True)


def test_uuid_array(conn):
    v = [uuid.UUID(int=7), uuid.UUID("12345678-1234-5678-1234-567812345678"), None]
    row = one(conn, "SELECT $1::uuid[] IS NOT DISTINCT FROM ARRAY[$2::uuid, $3::uuid, NULL], "
                    "array_to_string($1::uuid[], ',')", [v, v[0], v[1]])
    assert row == (True, "%s,%s" % (v[0], v[1]))


def test_bytea_array(conn):
    v = [b"", b"\x00\x01\xff", b'\\"{},', bytearray(b"ab"), memoryview(b"\x7f")]
    row = one(conn, "SELECT $1::bytea[] = ARRAY[%s], "
                    "(SELECT string_agg(md5(e), ',' ORDER BY i) FROM unnest($1::bytea[]) WITH ORDINALITY t(e, i))"
              % placeholders(2, len(v), "bytea"), [v] + v)
    assert row[0] is True
    assert row[1] == ",".join(hashlib.md5(bytes(b)).hexdigest() for b in v)


def test_empty_arrays(conn):
    # lists of empty lists are the one empty array, as ARRAY[ARRAY[]::int[]] is
    row = one(conn, "SELECT cardinality($1::int[]), $1::int[] = '{}'::int[], $2::text[] = '{}'::text[], "
                    "$3::int[] = ARRAY[ARRAY[]::int[], ARRAY[]::int[]], $4::int[] = '{}', $1::int[]",
              [[], (), [[], []], [[[]]]])
    assert row == (0, True, True, True, True, [])


def test_json_wrapper_and_dicts(conn):
    doc = [1, "a", None, {"b": [True, 2.5]}]
    row = one(conn, "SELECT $1::jsonb = '[1, \"a\", null, {\"b\": [true, 2.5]}]'::jsonb, jsonb_typeof($1::jsonb), "
                    "$2::jsonb = '{\"k\": [1, 2]}'::jsonb, $3::json::text, $4::jsonb = '\"s\"'::jsonb",
              [pgspout.Json(doc), {"k": [1, 2]}, pgspout.Json({"x": 1}, dumps=lambda o: json.dumps(o, indent=1)),
               pgspout.Json("s")])
    assert row == (True, "array", True, '{\n "x": 1\n}', True)
    # dicts and Json values inside a list are JSON elements (jsonb[])
    row = one(conn, "SELECT $1::jsonb[] IS NOT DISTINCT FROM ARRAY[$2::jsonb, '[1, 2]'::jsonb, NULL], "
                    "($1::jsonb[])[1] ->> 'a', ($1::jsonb[])[2] = '[1, 2]'::jsonb, ($1::jsonb[])[3] IS NULL",
              [[{"a": 'x,\\"}'}, pgspout.Json([1, 2]), None], {"a": 'x,\\"}'}])
    assert row == (True, 'x,\\"}', True, True)
    with pytest.raises(TypeError):
        conn.stream("SELECT $1::jsonb", [pgspout.Json(1, dumps=lambda o: b"1")])
    assert repr(pgspout.Json([1])) == "pgspout.Json([1])"


def test_round_trip_back(conn):
    """Both directions: what goes out as an array comes back as the same list."""
    v = [["a", None], ['"', "\\"]]
    assert one(conn, "SELECT $1::text[]", [v]) == (v,)
    assert one(conn, "SELECT $1::numeric[]", [[Decimal("1.5"), None]]) == ([Decimal("1.5"), None],)


def test_registry_open_with_array(dsn):
    sid = pgspout.registry.open(dsn, "SELECT g FROM unnest($1::int[]) g", [[3, 1, 2]])
    try:
        assert list(pgspout.registry.rows(sid)) == [{"g": 3}, {"g": 1}, {"g": 2}]
    finally:
        pgspout.registry.close(sid)


@pytest.mark.parametrize("v, words", [
    ([[1, 2], [3]], "ragged array: a list of 1 elements where the first at this depth has 2"),
    ([[1, 2], 3], "ragged array: a value where the first element at this depth is a list"),
    ([1, [2]], "ragged array: a list where the first element at this depth is a value"),
    ([[1], None], "ragged array: a value where the first element at this depth is a list"),
    ([[], [1]], "ragged array: a list of 1 elements where the first at this depth has 0"),
    ([[[[[[[1]]]]]]], "more than 6 dimensions"),
])
def test_ragged_arrays_refused(conn, v, words):
    with pytest.raises(ValueError) as ei:
        conn.stream("SELECT $1::int[]", [v])
    assert words in str(ei.value) and "parameter $1" in str(ei.value)
    assert one(conn, "SELECT 1") == (1,)


def test_self_referencing_list_refused(conn):
    v = [1]
    v.append(v)
    with pytest.raises(ValueError):
        conn.stream("SELECT $1::text[]", [[v]])


def test_bad_element_type(conn):
    with pytest.raises(TypeError) as ei:
        conn.stream("SELECT $1::text[]", [["a", {1, 2}]])
    assert "parameter $1[1]: cannot send set in an array" in str(ei.value)
    with pytest.raises(ValueError):  # a NUL byte, as for a scalar parameter
        conn.stream("SELECT $1::text[]", [["nul\x00inside"]])
