"""Arrow from the core (pgspout_stream_arrow) through Stream.__arrow_c_stream__:
types and values checked against what the server computes, batches bounded
by chunk_rows, pandas and polars on the same capsule, errors, cancel, pause,
close order and stats. tests/python/run.sh installs pyarrow, pandas and
polars and sets PGSPOUT_REQUIRE_ARROW=1, so these run in CI; elsewhere they
skip when pyarrow is missing."""
import gc
import os
import threading
import time

import pytest

import pgspout

from conftest import one

if os.environ.get("PGSPOUT_REQUIRE_ARROW") == "1":
    import pyarrow as pa  # noqa: E402  (must be importable here)
else:
    pa = pytest.importorskip("pyarrow")
import pyarrow.compute  # noqa: E402,F401  (pa.compute)

N = 20000
M = 1000000007


def trunc_mod(c):
    """sum of the int64 values modulo M as PostgreSQL's % does it (toward 0)."""
    return sum(abs(x) % M * (1 if x >= 0 else -1) for x in c.cast(pa.int64()).to_pylist())


GEN = "FROM generate_series(1, %d) g" % N

# column expression, the Arrow type it must map to, a server-side aggregate
# over v, and the same aggregate computed from the Arrow column
COLS = [
    ("CASE WHEN g % 7 = 0 THEN NULL ELSE g % 2 = 0 END", pa.bool_(),
     "count(*) FILTER (WHERE v)", lambda c: sum(1 for x in c.to_pylist() if x)),
    ("(g % 30000)::int2", pa.int16(), "sum(v)", lambda c: pa.compute.sum(c).as_py()),
    ("g * 1000", pa.int32(), "sum(v)", lambda c: pa.compute.sum(c).as_py()),
    ("CASE WHEN g % 11 = 0 THEN NULL ELSE g::int8 << 33 END", pa.int64(), "sum(v)",
     lambda c: pa.compute.sum(c).as_py()),
    ("g::float8 / 4", pa.float64(), "sum(v)", lambda c: pa.compute.sum(c).as_py()),
    ("(g * 13.0001 - 100000)::numeric(14,4)", pa.decimal128(14, 4), "sum(v)",
     lambda c: pa.compute.sum(c).as_py()),
    ("'2001-02-03'::date + g % 5000", pa.date32(), "sum(v - '1970-01-01'::date)",
     lambda c: pa.compute.sum(c.cast(pa.int32())).as_py()),
    ("'2024-01-01 00:00:00+00'::timestamptz + g * interval '1.000037 hour'",
     pa.timestamp("us", tz="UTC"), "sum((extract(epoch FROM v) * 1000000)::int8 % 1000000007)",
     trunc_mod),
    ("'1950-01-01'::timestamp + g * interval '3 days 1.5 sec'", pa.timestamp("us"),
     "sum((extract(epoch FROM v) * 1000000)::int8 % 1000000007)", trunc_mod),
    ("time '00:00' + g * interval '1.234567 sec'", pa.time64("us"),
     "sum((extract(epoch FROM v) * 1000000)::int8)",
     lambda c: pa.compute.sum(c.cast(pa.int64())).as_py()),
    ("make_interval(0, g % 30 - 15, 0, g % 40 - 20)", pa.month_day_nano_interval(),
     "sum((extract(year FROM v) * 12 + extract(month FROM v)) * 100 + extract(day FROM v))",
     lambda c: sum(x.months * 100 + x.days for x in c.to_pylist())),
    ("CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END", pa.binary(),
     "sum(get_byte(v, 7))", lambda c: sum(x[7] for x in c.to_pylist() if x is not None)),
    ("md5(g::text)::uuid", None, "sum(get_byte(uuid_send(v), 0))",
     lambda c: sum(bytes(x)[0] for x in c.storage.to_pylist()
                   if x is not None) if hasattr(c, "storage")
     else sum(x[0] for x in c.to_pylist())),
    ("CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('é', g % 9) END", pa.string(),
     "sum(length(v))", lambda c: sum(len(x) for x in c.to_pylist() if x is not None)),
    ("jsonb_build_object('g', g)", pa.string(), "sum(length(v::text))",
     lambda c: sum(len(x) for x in c.to_pylist())),
]


def select():
    return "SELECT " + ", ".join("%s AS c%d" % (e, i) for i, (e, _, _, _) in enumerate(COLS)) \
        + " " + GEN


def oracle(conn, i):
    expr, _, agg, _ = COLS[i]
    (v,) = one(conn, "SELECT (%s)::numeric FROM (SELECT %s AS v, g %s) t" % (agg, expr, GEN))
    return v


def test_types_and_values_against_server(conn, dsn):
    with pgspout.connect(dsn) as c2:
        wants = [oracle(c2, i) for i in range(len(COLS))]
    s = conn.stream(select(), chunk_rows=500)
    reader = pa.RecordBatchReader.from_stream(s)
    sizes = []
    batches = []
    for b in reader:
        sizes.append(b.num_rows)
        batches.append(b)
    table = pa.Table.from_batches(batches, schema=reader.schema)
    assert table.num_rows == N
    assert max(sizes) <= 500 and len(sizes) >= N // 500
    for i, (expr, typ, _, agg) in enumerate(COLS):
        col = table.column(i).combine_chunks()
        if typ is None:  # uuid: the arrow.uuid extension or its storage
            assert col.type.byte_width == 16 or str(col.type) == "extension<arrow.uuid>"
        else:
            assert col.type == typ, (expr, col.type)
        assert agg(col) == wants[i], expr
    assert s.stats["rows_delivered"] == N
    assert s.state == "done"


def test_pandas_and_polars_read_the_capsule(conn):
    pd = pytest.importorskip("pandas")
    q = "SELECT g, g::numeric(10,2) / 4 AS d, now() AS t %s" % GEN
    df = conn.stream(q).to_pandas()
    assert len(df) == N and int(df["g"].sum()) == N * (N + 1) // 2
    assert str(df["t"].dtype).startswith("datetime64[us")
    da = conn.stream(q).to_pandas(dtype_backend="pyarrow")
    assert isinstance(da["g"].dtype, pd.ArrowDtype)
    frames = list(conn.stream(q, chunk_rows=1000).dataframes(3000))
    assert all(3000 <= len(f) < 4000 for f in frames[:-1])  # whole batches of <= 1000
    assert sum(len(f) for f in frames) == N
    pl = pytest.importorskip("polars")
    pf = pl.from_arrow(conn.stream(q).arrow_reader())
    assert pf.height == N and pf["g"].sum() == N * (N + 1) // 2
    with pytest.raises(ValueError):
        conn.stream(q).to_pandas(dtype_backend="nope")


def test_error_mid_stream_reaches_the_reader(conn):
    s = conn.stream("SELECT 10 / (5000 - g) AS x FROM generate_series(1, 10000) g",
                    chunk_rows=100)
    reader = s.arrow_reader()
    rows = 0
    with pytest.raises(Exception) as e:
        for b in reader:
            rows += b.num_rows
    assert "22012" in str(e.value)
    assert rows < 5000
    assert s.state == "failed"
    assert one(conn, "SELECT 1") == (1,)  # the connection is reusable


def test_value_the_type_cannot_hold(conn):
    s = conn.stream("SELECT v::numeric(10,2) FROM (VALUES (1.5), ('NaN')) t(v)")
    with pytest.raises(Exception) as e:
        s.to_arrow()
    assert "evalue" in str(e.value)


def test_cancel_and_pause_from_another_thread(conn):
    s = conn.stream("SELECT g, pg_sleep(0.0001) %s" % GEN, chunk_rows=200)
    reader = s.arrow_reader()
    first = reader.read_next_batch()
    assert first.num_rows == 200
    threading.Timer(0.2, s.cancel).start()
    with pytest.raises(Exception) as e:
        for _ in reader:
            pass
    assert "ecancelled" in str(e.value)
    assert one(conn, "SELECT 2") == (2,)

    s = conn.stream("SELECT g %s" % GEN, chunk_rows=100)
    s.pause()
    threading.Timer(0.3, s.resume).start()
    t = s.to_arrow()
    assert t.num_rows == N
    assert s.stats["pauses"] >= 1


def test_export_once_close_order_and_lifetime(conn):
    s = conn.stream("SELECT g %s" % GEN, chunk_rows=100)
    assert next(s) == (1,)  # rows converted for next() are not lost
    reader = s.arrow_reader()
    with pytest.raises(pgspout.StateError):
        s.__arrow_c_stream__()
    b = reader.read_next_batch()
    assert b.column(0)[0].as_py() == 2
    s.close()
    with pytest.raises(Exception) as e:
        reader.read_next_batch()
    assert "closed" in str(e.value)
    assert b.column(0)[-1].as_py() == b.num_rows + 1  # the batch outlives both

    # the reader keeps a dropped Stream alive
    reader = conn.stream("SELECT g %s" % GEN).arrow_reader()
    gc.collect()
    assert reader.read_all().num_rows == N
    del reader
    gc.collect()
    time.sleep(0)
    assert one(conn, "SELECT 3") == (3,)


def test_option_arrow_binary_equals_text(conn):
    """arrow=True: binary results (every column's type allows it here), the
    same table as the text path; rows only through Arrow."""
    q = select()
    text = conn.stream(q, chunk_rows=700).to_arrow()
    s = conn.stream(q, chunk_rows=700, arrow=True)
    with pytest.raises(pgspout.StateError) as e:
        next(s)
    assert "option arrow" in str(e.value)
    binary = s.to_arrow()
    assert binary.schema.equals(text.schema)
    assert binary.equals(text)
    assert conn.arrow(q, chunk_rows=700).read_all().equals(text)
    assert s.stats["rows_delivered"] == N
    # a type without a binary decoder (an array) keeps the stream in text
    t = conn.stream("SELECT g, ARRAY[g, g + 1] AS a %s" % GEN, arrow=True).to_arrow()
    assert t.column("a")[1].as_py() == "{2,3}"


def test_duckdb_scans_the_reader(conn):
    duckdb = pytest.importorskip("duckdb") if os.environ.get("PGSPOUT_REQUIRE_ARROW") != "1" \
        else __import__("duckdb")
    r = conn.stream("SELECT g, g::text AS t %s" % GEN, arrow=True).arrow_reader()
    assert duckdb.sql("SELECT sum(g), count(t) FROM r").fetchall() == [(N * (N + 1) // 2, N)]
