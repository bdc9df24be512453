"""Misuses mypy and pyright must both report (scripts/test.sh, stage types):
each line marked `# error` must get an error and no other line may, which
proves the row types are precise rather than Any."""
import pgspout


def misuse(conn: pgspout.Connection) -> None:
    for row in conn.stream("SELECT 1"):
        row["a"]  # error
    for d in conn.stream("SELECT 1 AS a", rows="dict"):
        d[0]  # error
    for text in conn.stream("SELECT 1", rows="json"):
        text + 1  # error
    for r in conn.stream("SELECT 1", rows="tuple"):
        r.keys()  # error
    s = conn.stream("SELECT 1", rows="dict")
    rows = s.fetch()
    if rows is not None:
        rows[0][1]  # error
