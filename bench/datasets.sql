-- Benchmark datasets (psql -v rows=N -f bench/datasets.sql).
--   bench_json   one jsonb column, ~400 bytes of JSON text per row
--   bench_typed  int4, int8, float8, numeric, text, bool, timestamptz, uuid,
--                date; every 100th row has NULL numeric and text
-- Deterministic: the same N gives the same bytes on every run.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_json, bench_typed;

CREATE TABLE bench_json (data jsonb);
INSERT INTO bench_json
SELECT jsonb_build_object(
    'id', g,
    'uuid', md5(g::text)::uuid,
    'name', 'user_' || g,
    'email', 'user' || g || '@example.com',
    'active', g % 3 <> 0,
    'score', round((g % 100000) / 7.0, 4),
    'created_at', to_char(timestamp '2024-01-01' + g * interval '1 minute',
                          'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'tags', jsonb_build_array('tag' || (g % 10), 'tag' || (g % 7), 'tag' || (g % 3)),
    'address', jsonb_build_object('street', g || ' Main Street',
                                  'city', 'City ' || (g % 100),
                                  'zip', lpad((g % 100000)::text, 5, '0'),
                                  'country', 'XX'),
    'notes', md5(g::text) || ' ' || md5((g + 1)::text)
)
FROM generate_series(1, :rows) g;

CREATE TABLE bench_typed (
    i4 int4, i8 int8, f8 float8, num numeric(14, 4), txt text,
    flag bool, ts timestamptz, id uuid, day date
);
INSERT INTO bench_typed
SELECT g::int4,
       g::int8 * 1000003,
       g / 7.0::float8,
       CASE WHEN g % 100 = 0 THEN NULL ELSE round((g % 1000000) / 3.0, 4) END,
       CASE WHEN g % 100 = 0 THEN NULL ELSE 'text value ' || md5(g::text) END,
       g % 2 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       md5(g::text)::uuid,
       date '2000-01-01' + (g % 10000)
FROM generate_series(1, :rows) g;

VACUUM (FREEZE, ANALYZE) bench_json, bench_typed;
SELECT 'bench_json' AS "table", count(*) AS rows, round(avg(length(data::text))) AS avg_row_bytes,
       pg_size_pretty(pg_total_relation_size('bench_json')) AS size FROM bench_json
UNION ALL
SELECT 'bench_typed', count(*), round(avg(length(t::text))),
       pg_size_pretty(pg_total_relation_size('bench_typed')) FROM bench_typed t;
