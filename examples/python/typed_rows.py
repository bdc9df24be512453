"""Typed rows: what mypy and pyright infer from conn.stream(..., rows=...).

    python examples/python/typed_rows.py "host=localhost dbname=app"

scripts/test.sh's `types` stage runs mypy and pyright (default settings) on
this file and on the installed package: the default rows are tuples
(``Tuple[Any, ...]``), rows="dict" gives ``Dict[str, Any]``, rows="json"
gives ``str``, so the loops below type check without casts.
"""
import sys
from typing import Any, Dict, List, Optional, Tuple

import pgspout


def sum_plus_one(conn: pgspout.Connection) -> int:
    total = 0
    for row in conn.stream("SELECT g FROM generate_series(1, $1::int) g", [10]):
        total += row[0] + 1  # row: Tuple[Any, ...]
    return total


def names_by_id(conn: pgspout.Connection) -> Dict[int, str]:
    out: Dict[int, str] = {}
    with conn.stream("SELECT g AS id, 'n' || g AS name FROM generate_series(1, 3) g",
                     rows="dict", chunk_rows=100) as s:
        for d in s:  # d: Dict[str, Any]
            out[d["id"]] = d["name"]
    return out


def json_lines(conn: pgspout.Connection) -> List[str]:
    lines = [text.strip() for text in conn.stream("SELECT 1 AS a, 'x' AS b", rows="json")]
    return lines  # str rows


def first_chunk(conn: pgspout.Connection) -> Optional[List[Tuple[Any, ...]]]:
    s = conn.stream("SELECT g FROM generate_series(1, 5) g", label="typed")
    try:
        return s.fetch()  # Optional[List[Tuple[Any, ...]]]
    finally:
        s.close()


def any_shape(conn: pgspout.Connection, mode: str) -> List[pgspout.Row]:
    # rows= not a literal: the union of the three shapes
    return list(conn.stream("SELECT 1", rows=mode))


def ids_in(conn: pgspout.Connection, ids: List[int]) -> int:
    # a list parameter is an array: WHERE id = ANY($1)
    for (n,) in conn.stream("SELECT count(*) FROM generate_series(1, 10) g WHERE g = ANY($1)", [ids]):
        return int(n)
    return 0


def main(dsn: str) -> None:
    with pgspout.connect(dsn) as conn:
        print(sum_plus_one(conn), names_by_id(conn), json_lines(conn), first_chunk(conn),
              any_shape(conn, "tuple"), ids_in(conn, [2, 3, 5]))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
