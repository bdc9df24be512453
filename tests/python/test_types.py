"""Type conversion matrix: values the server computes, converted in C."""
import datetime as dt
import json
import math
import random
import uuid
from decimal import Decimal

import pytest

import pgspout
from conftest import one

UTC = dt.timezone.utc


def tz(h=0, m=0, s=0):
    sign = -1 if h < 0 or m < 0 or s < 0 else 1
    return dt.timezone(sign * dt.timedelta(hours=abs(h), minutes=abs(m), seconds=abs(s)))


def test_integers(conn):
    row = one(conn, "SELECT 32767::int2, (-32768)::int2, 2147483647, (-2147483648)::int4, "
                    "9223372036854775807::int8, (-9223372036854775808)::int8, 0::int8, "
                    "4294967295::oid, 42::oid, -1")
    assert row == (32767, -32768, 2147483647, -2147483648, 9223372036854775807,
                   -9223372036854775808, 0, 4294967295, 42, -1)
    assert all(type(v) is int for v in row)


def test_integers_computed(conn):
    rows = list(conn.stream("SELECT i, i::int8 * 3037000499, -i::int2 FROM generate_series(1, 2000) i"))
    assert rows == [(i, i * 3037000499, -i) for i in range(1, 2001)]


def test_floats_special(conn):
    row = one(conn, "SELECT 'NaN'::float8, 'Infinity'::float8, '-Infinity'::float8, '-0'::float8, "
                    "0::float8, 'NaN'::float4, '-Infinity'::float4, '-0'::float4, 1.5::float4, "
                    "1.0::float8 / 3, 1e308::float8, 5e-324::float8, -2.2250738585072014e-308::float8, "
                    "1.7976931348623157e308::float8, 0.1::float4")
    assert math.isnan(row[0]) and row[1] == math.inf and row[2] == -math.inf
    assert row[3] == 0.0 and math.copysign(1.0, row[3]) == -1.0
    assert row[4] == 0.0 and math.copysign(1.0, row[4]) == 1.0
    assert math.isnan(row[5]) and row[6] == -math.inf
    assert math.copysign(1.0, row[7]) == -1.0
    assert row[8] == 1.5
    assert row[9] == 1.0 / 3
    assert row[10] == 1e308 and row[11] == 5e-324 and row[12] == -2.2250738585072014e-308
    assert row[13] == 1.7976931348623157e308
    assert row[14] == 0.1  # float4 text is the shortest form: "0.1"
    assert all(type(v) is float for v in row)


def test_floats_round_trip(conn):
    rnd = random.Random(7)
    vals = [rnd.uniform(-1e6, 1e6) for _ in range(3000)]
    vals += [rnd.random() * 10 ** rnd.randint(-300, 300) for _ in range(3000)]
    vals += [round(rnd.uniform(-1000, 1000), rnd.randint(0, 6)) for _ in range(3000)]
    vals += [float(i) for i in range(-50, 50)] + [2.0 ** 53, 2.0 ** 53 + 2, 1e22, 1e23, 123456789012345.6]
    got = [r[0] for r in conn.stream("SELECT x FROM unnest($1::float8[]) WITH ORDINALITY u(x, n) ORDER BY n",
                                     ["{" + ",".join(repr(v) for v in vals) + "}"])]
    assert got == vals


def test_numeric(conn):
    big = "12345678901234567890123456789012345678901234567890.123456789012345678901234567890"
    row = one(conn, "SELECT 1e-30::numeric, $1::numeric, 'NaN'::numeric, 'Infinity'::numeric, "
                    "'-Infinity'::numeric, 1::numeric / 3, (-0.00)::numeric, 1.25::numeric(12,2) * 2, "
                    "12345678901234567890123456789012345678901234567890::numeric", [big])
    assert row[0] == Decimal("1e-30") and row[0].as_tuple().exponent == -30
    assert str(row[1]) == big
    assert row[2].is_nan()
    assert row[3] == Decimal("Infinity") and row[4] == Decimal("-Infinity")
    assert row[5] == Decimal("0.33333333333333333333")
    assert row[6] == 0
    assert row[7] == Decimal("2.50") and str(row[7]) == "2.50"
    assert row[8] == 12345678901234567890123456789012345678901234567890
    assert all(type(v) is Decimal for v in row)


def test_bool_and_null(conn):
    row = one(conn, "SELECT true, false, NULL::bool, NULL::int, NULL::text, NULL::float8, "
                    "NULL::numeric, NULL::date, NULL::timestamptz, NULL::uuid, NULL::jsonb, "
                    "NULL::int[], NULL::bytea, NULL::interval, NULL")
    assert row[0] is True and row[1] is False
    assert all(v is None for v in row[2:])


def test_text_unicode(conn):
    s = "héllo ✓ 𝄞 日本語 \"quoted\" back\\slash\nnew line\ttab"
    row = one(conn, "SELECT $1::text, ''::text, 'abc'::varchar(10), 'x'::char, 'ab'::char(4), "
                    "'pg_class'::name, upper($1), length($1)", [s])
    assert row[0] == s and row[1] == "" and row[2] == "abc" and row[3] == "x"
    assert row[4] == "ab  " and row[5] == "pg_class"
    assert row[6] == s.upper()
    assert row[7] == len(s)


def test_bytea(conn):
    data = bytes(range(256)) * 3
    row = one(conn, "SELECT '\\x00ff10'::bytea, ''::bytea, $1::bytea, sha256($1::bytea), "
                    "convert_to('héllo', 'UTF8')", [data])
    assert row[0] == b"\x00\xff\x10" and row[1] == b"" and row[2] == data
    import hashlib
    assert row[3] == hashlib.sha256(data).digest()
    assert row[4] == "héllo".encode()
    assert all(type(v) is bytes for v in row)


def test_bytea_escape_output(dsn):
    with pgspout.connect(dsn) as c:
        one(c, "SELECT set_config('bytea_output', 'escape', false)")
        data = bytes(range(256))
        assert one(c, "SELECT $1::bytea, 'a\\\\b'::bytea", [data]) == (data, b"a\\b")


def test_date(conn):
    row = one(conn, "SELECT '2024-02-29'::date, '0001-01-01'::date, '9999-12-31'::date, "
                    "'infinity'::date, '-infinity'::date, '0044-03-15 BC'::date, '10000-01-01'::date, "
                    "current_date, current_date - 1000")
    assert row[0] == dt.date(2024, 2, 29) and row[1] == dt.date(1, 1, 1) and row[2] == dt.date(9999, 12, 31)
    assert row[3] is dt.date.max or row[3] == dt.date.max
    assert row[4] == dt.date.min
    assert row[5] == "0044-03-15 BC" and row[6] == "10000-01-01"  # not representable: text
    assert row[8] == row[7] - dt.timedelta(days=1000)


def test_dates_computed(conn):
    rows = list(conn.stream("SELECT d::date, to_char(d, 'YYYY-MM-DD') FROM "
                            "generate_series('1900-01-01'::date, '2100-12-31', '17 days') d"))
    assert len(rows) > 4000
    for d, text in rows:
        assert d == dt.date.fromisoformat(text)


def test_timestamp(conn):
    row = one(conn, "SELECT '2024-01-31 12:34:56.789012'::timestamp, '2024-01-31 12:34:56'::timestamp, "
                    "'1999-12-31 23:59:59.5'::timestamp, 'infinity'::timestamp, '-infinity'::timestamp, "
                    "'0001-01-01 00:00:00'::timestamp, '2000-01-01 00:00:00 BC'::timestamp, "
                    "'2024-01-31 12:34:56.1'::timestamp(1)")
    assert row[0] == dt.datetime(2024, 1, 31, 12, 34, 56, 789012)
    assert row[1] == dt.datetime(2024, 1, 31, 12, 34, 56)
    assert row[2] == dt.datetime(1999, 12, 31, 23, 59, 59, 500000)
    assert row[3] == dt.datetime.max and row[4] == dt.datetime.min
    assert row[5] == dt.datetime(1, 1, 1)
    assert row[6] == "2000-01-01 00:00:00 BC"
    assert row[7] == dt.datetime(2024, 1, 31, 12, 34, 56, 100000)
    assert row[0].tzinfo is None


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
                                  "Pacific/Chatham", "Europe/Amsterdam", "America/St_Johns",
                                  "Etc/GMT+12"])
def test_timestamptz_zones(dsn, zone):
    with pgspout.connect(dsn) as c:
        one(c, "SELECT set_config('TimeZone', $1, false)", [zone])
        rows = list(c.stream(
            "SELECT t, extract(epoch FROM t)::numeric, extract(timezone FROM t)::int FROM unnest(ARRAY["
            "'2024-01-31 12:34:56.789012+00', '2024-07-01 00:00:00+00', '1900-01-01 12:00:00+00', "
            "'1970-01-01 00:00:00+00', '2038-01-19 03:14:08.5+00']::timestamptz[]) t"))
        for t, epoch, offset in rows:
            assert t.tzinfo is not None
            assert t.utcoffset() == dt.timedelta(seconds=offset), (zone, t)
            assert Decimal(t.timestamp()).quantize(Decimal("0.000001")) == epoch.quantize(Decimal("0.000001"))
        # the same instant in every zone
        assert rows[0][0] == dt.datetime(2024, 1, 31, 12, 34, 56, 789012, tzinfo=UTC)
        inf = one(c, "SELECT 'infinity'::timestamptz, '-infinity'::timestamptz")
        assert inf == (dt.datetime.max.replace(tzinfo=UTC), dt.datetime.min.replace(tzinfo=UTC))


def test_timestamptz_seconds_offset(dsn):
    # Amsterdam before 1937 was UTC+00:19:32 (local mean time): a seconds offset
    with pgspout.connect(dsn) as c:
        one(c, "SELECT set_config('TimeZone', 'Europe/Amsterdam', false)")
        (t,) = one(c, "SELECT '1920-06-01 12:00:00+00'::timestamptz")
        assert t == dt.datetime(1920, 6, 1, 12, tzinfo=UTC)
        # summer time in 1920: LMT + 1h
        assert t.utcoffset() == dt.timedelta(hours=1, minutes=19, seconds=32)
        (t,) = one(c, "SELECT '1920-01-01 12:00:00+00'::timestamptz")
        assert t.utcoffset() == dt.timedelta(minutes=19, seconds=32)


def test_time_and_timetz(conn):
    row = one(conn, "SELECT '12:34:56.123'::time, '00:00:00'::time, '23:59:59.999999'::time, "
                    "'24:00:00'::time, '12:34:56+05:30'::timetz, '12:00:00-03'::timetz, "
                    "'01:02:03.5+00'::timetz")
    assert row[0] == dt.time(12, 34, 56, 123000)
    assert row[1] == dt.time(0, 0) and row[2] == dt.time(23, 59, 59, 999999)
    assert row[3] == "24:00:00"  # not a Python time: text
    assert row[4] == dt.time(12, 34, 56, tzinfo=tz(5, 30))
    assert row[4].utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert row[5].utcoffset() == -dt.timedelta(hours=3)
    assert row[6] == dt.time(1, 2, 3, 500000, tzinfo=UTC)


def test_interval(conn):
    row = one(conn, "SELECT '1 day 02:03:04.5'::interval, '-1 days +02:00:00'::interval, "
                    "'-00:00:01.5'::interval, '1 mon'::interval, '1 year 2 mons 3 days'::interval, "
                    "'100 hours'::interval, '0'::interval, '-1 year -2 mons'::interval, "
                    "'1.000001 seconds'::interval, '3 days -04:00:00'::interval")
    td = dt.timedelta
    assert row[0] == td(days=1, hours=2, minutes=3, seconds=4.5)
    assert row[1] == td(days=-1, hours=2)
    assert row[2] == td(seconds=-1.5)
    assert row[3] == td(days=30)
    assert row[4] == td(days=360 + 60 + 3)
    assert row[5] == td(hours=100)
    assert row[6] == td(0)
    assert row[7] == -td(days=360 + 60)
    assert row[8] == td(seconds=1, microseconds=1)
    assert row[9] == td(days=3, hours=-4)


def test_interval_computed(conn):
    # without years, extract(epoch) uses the same 30-day months
    rows = list(conn.stream(
        "SELECT i, extract(epoch FROM i)::numeric FROM (SELECT make_interval(0, (n % 23) - 11, 0, "
        "(n * 7) % 400 - 200, (n * 13) % 300 - 150, n % 60, (n * 1.000137) % 60) i "
        "FROM generate_series(1, 3000) n) s"))
    for i, epoch in rows:
        assert Decimal(i.days * 86400 + i.seconds) + Decimal(i.microseconds) / 1000000 == epoch


def test_uuid(conn):
    rows = list(conn.stream("SELECT u, u::text FROM (SELECT gen_random_uuid() u FROM generate_series(1, 500)) s"))
    for u, text in rows:
        assert type(u) is uuid.UUID and u == uuid.UUID(text) and str(u) == text
        assert hash(u) == hash(uuid.UUID(text)) and u.version == 4
    row = one(conn, "SELECT '00000000-0000-0000-0000-000000000000'::uuid, "
                    "'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF'::uuid, $1::uuid", [uuid.UUID(int=12345)])
    assert row == (uuid.UUID(int=0), uuid.UUID(int=2 ** 128 - 1), uuid.UUID(int=12345))
    import pickle
    assert pickle.loads(pickle.dumps(row[2])) == row[2]


def test_json(conn):
    doc = {"a": [1, 2.5, "x", None, True, {"b": {}}], "c": "é ✓", "n": 12345678901234567890,
           "nested": {"deep": [[[]]]}, "s": "line\nbreak \"q\""}
    row = one(conn, "SELECT $1::jsonb, $1::json, '  [1, 2] '::json, '\"str\"'::jsonb, 'null'::jsonb, "
                    "'{}'::json, '[]'::jsonb, jsonb_build_object('k', 1.5, 'l', jsonb_build_array(1, 'x')), "
                    "'{\n  \"x\" : 1\n}'::json, '3.25'::jsonb",
              [json.dumps(doc)])
    assert row[0] == doc and row[1] == doc
    assert row[2] == [1, 2] and row[3] == "str" and row[4] is None
    assert row[5] == {} and row[6] == [] and row[7] == {"k": 1.5, "l": [1, "x"]}
    assert row[8] == {"x": 1} and row[9] == 3.25


def test_arrays(conn):
    row = one(conn, "SELECT '{1,2,3}'::int4[], '{}'::int4[], '{1,NULL,3}'::int8[], "
                    "'{{1,2},{3,4}}'::int2[], ARRAY['a b', 'c\"d', 'e\\f', '', 'NULL', NULL, 'x,y', '{}', 'é'], "
                    "'[0:1]={7,8}'::int[], '{NaN,Infinity,-Infinity,-0,1.5}'::float8[], "
                    "'{1.10,NaN}'::numeric[], '{2024-01-31,infinity}'::date[], '{t,f,NULL}'::bool[], "
                    "ARRAY['\\x00ff'::bytea, ''::bytea], '{}'::text[][], ARRAY[]::uuid[], "
                    "'{{{1}},{{2}}}'::int[], ARRAY['{\"a\": [1]}'::jsonb, 'null'::jsonb], "
                    "'{\"01:02:03\"}'::interval[], ARRAY['a'::varchar, NULL]")
    assert row[0] == [1, 2, 3] and row[1] == [] and row[2] == [1, None, 3]
    assert row[3] == [[1, 2], [3, 4]]
    assert row[4] == ["a b", 'c"d', "e\\f", "", "NULL", None, "x,y", "{}", "é"]
    assert row[5] == [7, 8]
    f = row[6]
    assert math.isnan(f[0]) and f[1:3] == [math.inf, -math.inf] and math.copysign(1, f[3]) == -1 and f[4] == 1.5
    assert str(row[7][0]) == "1.10" and row[7][1].is_nan()
    assert row[8] == [dt.date(2024, 1, 31), dt.date.max]
    assert row[9] == [True, False, None]
    assert row[10] == [b"\x00\xff", b""]
    assert row[11] == [] and row[12] == []
    assert row[13] == [[[1]], [[2]]]
    assert row[14] == [{"a": [1]}, None]
    assert row[15] == [dt.timedelta(hours=1, minutes=2, seconds=3)]
    assert row[16] == ["a", None]


def test_arrays_time_types(dsn):
    with pgspout.connect(dsn) as c:
        one(c, "SELECT set_config('TimeZone', 'Asia/Kolkata', false)")
        row = one(c, "SELECT ARRAY['2024-01-31 12:00:00+00'::timestamptz, NULL], "
                     "ARRAY['2024-01-31 12:00:00.25'::timestamp], ARRAY['12:00'::time], "
                     "ARRAY[gen_random_uuid()]::text[] = ARRAY[]::text[], '{1.5,2}'::float4[]")
        assert row[0] == [dt.datetime(2024, 1, 31, 12, tzinfo=UTC), None]
        assert row[0][0].utcoffset() == dt.timedelta(hours=5, minutes=30)
        assert row[1] == [dt.datetime(2024, 1, 31, 12, 0, 0, 250000)]
        assert row[2] == [dt.time(12)]
        assert row[3] is False and row[4] == [1.5, 2.0]


def test_text_arrays_computed(conn):
    words = ["plain", "with space", 'quote"', "back\\slash", "", "NULL", "null", "comma,", "{brace}",
             "ünï", "tab\t", " lead"]
    rows = list(conn.stream("SELECT $1::text[], array_length($1::text[], 1)",
                            ["{" + ",".join('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'
                                            for w in words) + "}"]))
    assert rows == [(words, len(words))]


def test_other_types_are_text(conn):
    row = one(conn, "SELECT '127.0.0.1/32'::inet, point(1, 2), 'a'::\"char\", '<a/>'::xml, "
                    "'[1,2]'::int4range, 'fat & rat'::tsquery, '{10.0.0.1,::1}'::inet[]")
    assert row == ("127.0.0.1", "(1,2)", "a", "<a/>", "[1,3)", "'fat' & 'rat'", "{10.0.0.1,::1}")
    assert all(type(v) is str for v in row)


def test_rows_dict_and_json(conn):
    rows = list(conn.stream("SELECT i AS n, i * 1.5::float8 AS f, 'x' || i AS s, NULL::int AS z, "
                            "'NaN'::float8 AS nan, '{\"k\": 1}'::jsonb AS j FROM generate_series(1, 3) i",
                            rows="dict"))
    assert rows[0] == {"n": 1, "f": 1.5, "s": "x1", "z": None, "nan": rows[0]["nan"], "j": {"k": 1}}
    assert math.isnan(rows[0]["nan"]) and len(rows) == 3
    with conn.stream("SELECT i AS n, 'x\"' || i AS s, NULL::int AS z, 'NaN'::float8 AS nan, "
                     "'{\"k\": 1}'::jsonb AS j, i % 2 = 0 AS b FROM generate_series(1, 3) i", rows="json") as s:
        assert s.rows_mode == "json"
        texts = list(s)
    assert all(type(t) is str for t in texts)
    assert json.loads(texts[1]) == {"n": 2, "s": 'x"2', "z": None, "nan": "NaN", "j": {"k": 1}, "b": True}
    # a single json/jsonb column is handed over as the document itself
    docs = list(conn.stream("SELECT jsonb_build_object('i', i) FROM generate_series(1, 3) i", rows="json"))
    assert [json.loads(d) for d in docs] == [{"i": 1}, {"i": 2}, {"i": 3}]


def test_params_round_trip(conn):
    now = dt.datetime(2024, 1, 31, 12, 34, 56, 789012, tzinfo=tz(5, 30))
    params = [123, -9223372036854775808, 1.5, float("inf"), Decimal("1e-30"), Decimal("NaN"), True, False,
              b"\x00\x01\xff", now, dt.date(2024, 2, 29), dt.time(1, 2, 3, 4), uuid.UUID(int=7),
              {"a": [1, None]}, pgspout.Json([1, "x"]), "text é", None, dt.timedelta(days=-1, seconds=5, microseconds=6),
              dt.datetime(2024, 1, 31, 1, 2, 3)]
    row = one(conn, "SELECT $1::int8, $2::int8, $3::float8, $4::float8, $5::numeric, $6::numeric, $7::bool, "
                    "$8::bool, $9::bytea, $10::timestamptz, $11::date, $12::time, $13::uuid, $14::jsonb, "
                    "$15::jsonb, $16::text, $17::text, $18::interval, $19::timestamp", params)
    assert row[:4] == (123, -9223372036854775808, 1.5, math.inf)
    assert row[4] == Decimal("1e-30") and row[5].is_nan()
    assert row[6:9] == (True, False, b"\x00\x01\xff")
    assert row[9] == now
    assert row[10:16] == (dt.date(2024, 2, 29), dt.time(1, 2, 3, 4), uuid.UUID(int=7), {"a": [1, None]},
                          [1, "x"], "text é")
    assert row[16] is None
    assert row[17] == dt.timedelta(days=-1, seconds=5, microseconds=6)
    assert row[18] == dt.datetime(2024, 1, 31, 1, 2, 3)
    # bool and int subclasses are sent by value
    import enum

    class Color(enum.IntEnum):
        RED = 5
    assert one(conn, "SELECT $1::int, $2::text", [Color.RED, True]) == (5, "t")


def test_interval_extremes(conn):
    row = one(conn, "SELECT '2562047788:00:54.775807'::interval, '-2562047788:00:54.775807'::interval, "
                    "'178000000 years'::interval, '2147483647 days'::interval")
    assert row[0] == dt.timedelta(hours=2562047788, seconds=54, microseconds=775807)
    assert row[1] == -row[0]
    # beyond timedelta's range: the server's text
    assert row[2:] == ("178000000 years", "2147483647 days")


def test_interval_other_styles_are_text(dsn):
    with pgspout.connect(dsn) as c:
        one(c, "SELECT set_config('IntervalStyle', 'iso_8601', false)")
        assert one(c, "SELECT '1 day 02:00'::interval") == ("P1DT2H",)
        one(c, "SELECT set_config('DateStyle', 'SQL, DMY', false)")
        assert one(c, "SELECT '2024-01-31'::date") == ("31/01/2024",)
