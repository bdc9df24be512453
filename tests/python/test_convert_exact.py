"""The C converters' fast paths (float8 up to 19 digits, JSON parsed in C)
against the reference conversions they replace: every value must be what
float(text), Decimal(text) and json.loads(text) give for the server's text,
with the same types, signs, exponents and key order."""
import json
import math
import random
import struct
from decimal import Decimal

import pytest


def same(a, b):
    """a and b equal, type for type (bool is not int, 1.0 is not 1), floats
    bit for bit, dicts in the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def pairs(conn, sql, texts):
    """(converted value, server text) for each input text."""
    lit = ('"%s"' % t.replace("\\", "\\\\").replace('"', '\\"') for t in texts)
    return list(conn.stream(sql, ["{" + ",".join(lit) + "}"]))


def float_texts(rnd, n):
    out = []
    for i in range(n):
        mode = i % 6
        if mode == 0:  # any finite double, shortest text (up to 17 digits)
            x = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
            out.append(repr(x) if math.isfinite(x) else "1.5")
        elif mode == 1:  # 17 significant digits, like the wide bench's g*k/7
            out.append("%.17g" % (rnd.randrange(1, 10**7) / 7))
        elif mode == 2:  # random digit strings up to 19 digits, with exponents
            d = "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(1, 20)))
            cut = rnd.randrange(len(d) + 1)
            t = rnd.choice(["", "-"]) + (d[:cut] or "0") + "." + (d[cut:] or "0")
            out.append(t + ("e%d" % rnd.randrange(-30, 31) if rnd.random() < 0.5 else ""))
        elif mode == 3:  # halfway between two doubles, written out to 19-25 digits
            x = rnd.random() * 10 ** rnd.randrange(-5, 15)
            y = math.nextafter(x, math.inf)
            out.append("%.*e" % (rnd.randrange(18, 25), (Decimal(x) + Decimal(y)) / 2))
        elif mode == 4:  # exactly halfway between two doubles above 2^53: ties to even
            x = float(rnd.randrange(2**53, 2**63))
            h = (int(x) + int(math.nextafter(x, math.inf))) // 2
            out.append(str(h) if i % 4 else "%s.%se%d" % (str(h)[0], str(h)[1:], len(str(h)) - 1))
        else:  # prices
            out.append("%d.%02d" % (rnd.randrange(100000), rnd.randrange(100)))
    return out + ["NaN", "Infinity", "-Infinity", "-0", "0", "1e308", "5e-324",
                  "2.2250738585072014e-308", "1.7976931348623157e308", "9007199254740993",
                  "18446744073709551615", "9999999999999999999", "0.30000000000000004",
                  "47.63279401201412"]  # rounds onto a halfway point in 64 bits


def test_float8_as_float_of_text(conn):
    rnd = random.Random(11)
    texts = float_texts(rnd, 20000)
    rows = pairs(conn, "SELECT x::float8, x::float8::text FROM unnest($1::text[]) x", texts)
    bad = [(v, t) for v, t in rows if not same(v, float(t))]
    assert not bad, bad[:10]
    rows = pairs(conn, "SELECT x::float4, x::float4::text FROM unnest($1::text[]) x "
                 "WHERE x::float8 = 0 OR abs(x::float8) BETWEEN 1e-30 AND 1e30", texts[:5000])
    assert not [(v, t) for v, t in rows if not same(v, float(t))]


def test_numeric_as_decimal_of_text(conn):
    rnd = random.Random(12)
    texts = ["NaN", "Infinity", "-Infinity", "-0.000", "0", "1e-30", "-12345678901234567890.123400",
             "1e-16383", "9" * 1000 + "." + "1" * 1000, "1e131071"]
    for _ in range(5000):
        d = "".join(rnd.choice("0123456789") for _ in range(rnd.randrange(1, 60)))
        cut = rnd.randrange(len(d) + 1)
        texts.append(rnd.choice(["", "-"]) + (d[:cut] or "0") + "." + (d[cut:] or "0"))
    rows = pairs(conn, "SELECT x::numeric, x::numeric::text FROM unnest($1::text[]) x", texts)
    for v, t in rows:
        ref = Decimal(t)
        assert type(v) is Decimal and v.as_tuple() == ref.as_tuple() and str(v) == str(ref), (v, t)


def json_doc(rnd, depth=0):
    kind = rnd.randrange(10 if depth < 6 else 6)
    if kind == 0:
        return rnd.choice([True, False, None])
    if kind == 1:
        return rnd.choice([0, -1, 7, 2**53 + 1, -(2**63), 2**64, 10**40, -(10**25)])
    if kind == 2:
        return rnd.choice([0.0, -0.0, 1.5, 1e300, 5e-324, 0.1 + 0.2]) * rnd.choice([1, -1])
    if kind == 3:  # raw number texts json.loads turns into floats or ints
        x = float(rnd.randrange(2**53, 2**63))  # exactly halfway between two doubles
        tie = (int(x) + int(math.nextafter(x, math.inf))) // 2
        return "#" + rnd.choice(["%de0" % tie, "47.63279401201412", "1E400", "-1e-400", "1.0", "-0", "0e0", "123456789012345678901234567890",
                           "1.2345678901234567890123e10", "%.17g" % rnd.random()])
    if kind in (4, 5):
        return "".join(rnd.choice(["a", "Z", " ", "\\", '"', "/", "\n", "\t", "\b", "\x01", "é",
                                   "€", "\U0001f600", "\u2028", "key"])
                       for _ in range(rnd.randrange(0, 12)))
    if kind in (6, 7):
        return [json_doc(rnd, depth + 1) for _ in range(rnd.randrange(0, 5))]
    return {json_doc(rnd, 9) if rnd.random() < 0.3 else rnd.choice(["id", "name", "a", "", "é"]):
            json_doc(rnd, depth + 1) for _ in range(rnd.randrange(0, 5))}


def render(rnd, v):
    """JSON text of v, with random spacing, escapes and the raw number texts."""
    sp = lambda: rnd.choice(["", "", " ", "\n\t "])
    if isinstance(v, str) and v[:1] == "#":
        return v[1:]
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=rnd.random() < 0.5)
    if isinstance(v, list):
        return "[" + sp() + ("," + sp()).join(render(rnd, x) for x in v) + sp() + "]"
    if isinstance(v, dict):
        items = list(v.items())
        if items and rnd.random() < 0.3:  # a duplicate key: the last value wins
            items.append((items[0][0], rnd.choice([1, "dup", None])))
        return "{" + sp() + ("," + sp()).join(
            sp() + json.dumps(str(k)) + sp() + ":" + sp() + render(rnd, x) for k, x in items) + "}"
    return json.dumps(v)


def test_json_as_json_loads_of_text(conn):
    rnd = random.Random(13)
    texts = []
    for _ in range(3000):
        doc = json_doc(rnd)
        texts.append(sp_wrap(rnd, render(rnd, doc)))
    texts += ['"\\ud800"', '["\\udc00x", "\\ud83d\\ude00", "\\ud83dx"]', '"\\u0000\\u00e9\\u20AC"',
              "[1E400, -0, 0e0, 123456789012345678901234567890, 1.2345678901234567890123e10]",
              '{"a": 1, "b": 2, "a": 3}', "[" * 150 + "]" * 150, '{"x": ' * 120 + "1" + "}" * 120,
              " 1 ", "\n\"s\"\t", "true", "null", "[0]", '"\\/\\b\\f\\n\\r\\t"']
    # each special character at each position of a string (the 8-byte scan)
    texts += [json.dumps({"k" * i: "a" * i + c + "b" * (19 - i)}, ensure_ascii=False)
              for i in range(20) for c in ['"', "\\", "\n", "é", "\x1f", "\x7f", " ", "\U0001f600"]]
    rows = pairs(conn, "SELECT x::json, x::json::text FROM unnest($1::text[]) x", texts)
    bad = [(v, t) for v, t in rows if not same(v, json.loads(t))]
    assert not bad, bad[:5]
    rows = pairs(conn, "SELECT x::jsonb, x::jsonb::text FROM unnest($1::text[]) x",
                 [t for t in texts if "\\u0000" not in t and "\\ud800" not in t
                  and "\\udc00" not in t and "\\ud83dx" not in t])
    bad = [(v, t) for v, t in rows if not same(v, json.loads(t))]
    assert not bad, bad[:5]


def sp_wrap(rnd, t):
    return rnd.choice(["", " ", "\n"]) + t + rnd.choice(["", " ", "\r\n"])


def test_json_arrays(conn):
    """json[] elements go through the same converter."""
    rows = list(conn.stream("SELECT ARRAY['{\"a\": [1, 2.5, \"x\"]}', '\"\\ud800\"', 'null']::json[]"))
    assert same(rows[0][0], [{"a": [1, 2.5, "x"]}, "\ud800", None])
