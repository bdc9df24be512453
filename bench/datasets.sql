-- Benchmark datasets (psql -v rows=N -v wide_rows=M -f bench/datasets.sql;
-- -v json=0, -v typed=0 or -v wide=0 skips a table).
--   bench_json   rows rows, one jsonb column, ~400 bytes of JSON text per row
--   bench_typed  rows rows, int4, int8, float8, numeric, text, bool,
--                timestamptz, uuid, date; every 100th row has NULL numeric
--                and text
--   bench_wide   wide_rows rows (issue 11: 200,000), 40 columns: the 10 types
--                int4, int8, float8, numeric, text, bool, timestamptz, date,
--                uuid, varchar four times over; each text column is NULL in
--                10% of the rows (a different 10% per column); ~760 bytes of
--                text per row
-- Deterministic: the same N gives the same bytes on every run.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
\if :{?json}
\else
\set json 1
\endif
\if :{?typed}
\else
\set typed 1
\endif
\if :{?wide}
\else
\set wide 1
\endif
\if :{?wide_rows}
\else
\set wide_rows 200000
\endif

\if :json
DROP TABLE IF EXISTS bench_json;
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
VACUUM (FREEZE, ANALYZE) bench_json;
SELECT 'bench_json' AS "table", count(*) AS rows, round(avg(length(data::text))) AS avg_row_bytes,
       pg_size_pretty(pg_total_relation_size('bench_json')) AS size FROM bench_json;
\endif

\if :typed
DROP TABLE IF EXISTS bench_typed;
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
VACUUM (FREEZE, ANALYZE) bench_typed;
SELECT 'bench_typed' AS "table", count(*) AS rows, round(avg(length(t::text))) AS avg_row_bytes,
       pg_size_pretty(pg_total_relation_size('bench_typed')) AS size FROM bench_typed t;
\endif

\if :wide
-- Column k of each type (k = 1..4) is named <prefix>_k; {k} in an expression
-- is replaced by k, g is the row number (bigint). Values have the sizes of
-- real rows: ids and counts, 7-13 digit int8, floats with 17 significant
-- digits (odd k) or prices with 2 decimals (even k), numerics with k decimals,
-- text of 10-89 characters, microsecond timestamps, e-mail-like varchar.
SET bench.wide_rows = :'wide_rows';
DO $wide$
DECLARE
    cols constant text[][] := ARRAY[
        ['i4',   'int4',        '((g * {k} * 7919) % 2000000 - 1000000)::int4'],
        ['i8',   'int8',        'g * 1000003 * {k} + {k}'],
        ['f8',   'float8',      'CASE WHEN {k} % 2 = 1 THEN (g * {k}) / 7.0::float8'
                                ' ELSE ((g * {k}) % 100000) / 100.0::float8 END'],
        ['num',  'numeric',     'round((g * {k} % 10000000) / 3.0, {k})'],
        ['txt',  'text',        'CASE WHEN (g + {k} * 3) % 10 = 0 THEN NULL'
                                ' ELSE left(repeat(md5((g * {k})::text), 3), (10 + (g * {k}) % 80)::int) END'],
        ['flag', 'bool',        '(g + {k}) % 3 <> 0'],
        ['ts',   'timestamptz', 'timestamptz ''2024-01-01 00:00:00+00'''
                                ' + (g * {k}) * interval ''1.000137 second'''],
        ['day',  'date',        'date ''2000-01-01'' + ((g * {k}) % 20000)::int'],
        ['id',   'uuid',        'md5(g || ''/{k}'')::uuid'],
        ['vc',   'varchar(64)', '(''user'' || (g * {k}) || ''@example'' || {k} || ''.com'')::varchar(64)']];
    defs text[] := '{}';
    exprs text[] := '{}';
BEGIN
    FOR k IN 1..4 LOOP
        FOR t IN 1..array_length(cols, 1) LOOP
            defs := defs || format('%I %s', cols[t][1] || '_' || k, cols[t][2]);
            exprs := exprs || replace(cols[t][3], '{k}', k::text);
        END LOOP;
    END LOOP;
    DROP TABLE IF EXISTS bench_wide;
    EXECUTE format('CREATE TABLE bench_wide (%s)', array_to_string(defs, ', '));
    EXECUTE format('INSERT INTO bench_wide SELECT %s FROM generate_series(1, %s::bigint) g',
                   array_to_string(exprs, ', '), current_setting('bench.wide_rows'));
END
$wide$;
VACUUM (FREEZE, ANALYZE) bench_wide;
SELECT 'bench_wide' AS "table", count(*) AS rows, round(avg(length(t::text))) AS avg_row_bytes,
       pg_size_pretty(pg_total_relation_size('bench_wide')) AS size FROM bench_wide t;
\endif
