"""Option binary: rows fetched in binary convert to exactly the values the
same rows give in text (the text path is checked against the server in
test_types.py and test_convert_exact.py), edge values included; streams
whose columns it cannot take come in text; JSON rows refuse it."""
import datetime as dt
import decimal
import hashlib

import pytest

import pgspout

# Every type option binary takes, generated values with the edges mixed in:
# BC and year > 9999 (Python cannot hold them: the server's text, as str),
# infinity, 24:00:00, zone offsets with seconds, NaN/Infinity, long scales.
VALUES = r"""
WITH g AS (SELECT g, hashint8extended(g, 11) AS h FROM generate_series(1, 5000) g)
SELECT (h % 32768)::int2 AS i2, (h % 2147483648)::int4 AS i4, h AS i8,
  CASE g % 97 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity' WHEN 3 THEN '-0'
    ELSE (h % 1000000007)::float8 / 7 * 10::float8 ^ (g % 580 - 300) END AS f8,
  CASE g % 89 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity'
    ELSE round(h::numeric / 10::numeric ^ (g % 40), g % 25) * 10::numeric ^ (g % 7 * 9 - 30) END AS num,
  CASE WHEN g % 50 = 0 THEN NULL ELSE md5(g::text) || ' é ''"\' END AS txt,
  left(md5(g::text), g % 5)::char(6) AS bp, md5(g::text)::name AS nm, g % 3 = 0 AS flag,
  md5(g::text)::uuid AS id, json_build_object('g', g) AS js,
  jsonb_build_object('g', g, 'f', g / 7.0, 'a', jsonb_build_array(g, 'x', null)) AS jb,
  CASE g % 41 WHEN 0 THEN 'infinity' WHEN 1 THEN '-infinity'
    ELSE date '2000-01-01' + (h % 2400000)::int END AS d,
  CASE g % 31 WHEN 0 THEN '24:00:00'
    ELSE time '00:00' + make_interval(secs => abs(h % 86400000000) / 1e6) END AS t,
  ((time '00:00' + make_interval(secs => abs(h % 86400000000) / 1e6))::text ||
    (ARRAY['+05:30', '-08', '+00', '-03:00:15'])[g % 4 + 1])::timetz AS ttz,
  CASE g % 41 WHEN 0 THEN 'infinity'
    ELSE timestamp '2000-01-01' + make_interval(secs => (h % 207360000000000000) / 1e6) END AS ts,
  CASE g % 41 WHEN 1 THEN '-infinity'
    ELSE timestamptz '2000-01-01 00:00+00' + make_interval(secs => (h % 207360000000000000) / 1e6)
  END AS tstz
FROM g"""


def read(conn, sql, **opts):
    s = conn.stream(sql, **opts)
    rows = list(s)
    return s, rows


def same(a, b):
    """Equal, with NaN equal to NaN and the same type and tzinfo."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, decimal.Decimal) and a.is_nan():
        return b.is_nan()
    if isinstance(a, (dt.datetime, dt.time)) and a.utcoffset() != b.utcoffset():
        return False
    if isinstance(a, float):
        return a.hex() == b.hex()  # -0.0 too
    return a == b and str(a) == str(b)  # Decimal('1.0') and Decimal('1.00') differ


@pytest.fixture
def utc_conn(dsn):
    c = pgspout.connect(dsn)
    list(c.stream("SET TimeZone = 'UTC'"))
    yield c
    c.close()


def test_binary_rows_equal_text_rows(utc_conn):
    ts, text = read(utc_conn, VALUES)
    bs, binary = read(utc_conn, VALUES, binary=True)
    assert not ts.binary and bs.binary
    assert len(text) == len(binary) == 5000
    kinds = set()
    for r, (a_row, b_row) in enumerate(zip(text, binary)):
        for c, (a, b) in enumerate(zip(a_row, b_row)):
            kinds.add(type(b).__name__)
            assert same(a, b), (r, ts.columns[c].name, a, b)
    # the edges were there: values Python cannot hold came as the server's text
    assert {"int", "float", "Decimal", "str", "bool", "UUID", "dict", "date", "time",
            "datetime", "NoneType"} <= kinds
    assert any(isinstance(row[12], str) and row[12].endswith(" BC") for row in binary)


def test_dict_rows_and_checksum(utc_conn):
    sql = "SELECT g AS id, md5(g::text)::uuid AS u, g * 1.5 AS n FROM generate_series(1, 20000) g"
    s = utc_conn.stream(sql, binary=True, rows="dict")
    total, ids, digest = decimal.Decimal(0), 0, hashlib.md5()
    for row in s:
        total += row["n"]
        ids += row["id"]
        digest.update(str(row["u"]).encode() + b"\n")
    assert s.binary
    want = next(iter(utc_conn.stream(
        "SELECT sum(g * 1.5), sum(g), md5(string_agg(md5(g::text)::uuid::text || E'\\n', '' ORDER BY g)) "
        "FROM generate_series(1, 20000) g")))
    assert (total, ids, digest.hexdigest()) == want


def test_falls_back_to_text(utc_conn):
    for sql, binary in [("SELECT 1::int8, timestamptz '2024-01-02 03:04:05.5+00', 'x'::text", True),
                        ("SELECT interval '1 day'", False), ("SELECT ARRAY[1, 2]", False),
                        ("SELECT 1.5::float4", False), ("SELECT '\\x00'::bytea", False)]:
        s, rows = read(utc_conn, sql, binary=True)
        assert s.binary is binary, sql
        assert rows == list(utc_conn.stream(sql)), sql
    list(utc_conn.stream("SET TimeZone = 'Europe/Paris'"))
    s, rows = read(utc_conn, "SELECT timestamptz '2024-06-01 12:00+00'", binary=True)
    assert not s.binary
    assert rows[0][0].utcoffset() == dt.timedelta(hours=2)


def test_json_rows_refuse_binary(utc_conn):
    with pytest.raises(pgspout.StateError, match="option binary"):
        list(utc_conn.stream("SELECT 1", binary=True, rows="json"))
    assert list(utc_conn.stream("SELECT 1")) == [(1,)]
