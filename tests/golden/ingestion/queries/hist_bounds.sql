-- Range of the historical load of one object: [max(start_date, range_end of the last
-- successful historical load), S), S the split point (docs/internals.md "Ingestion semantics").
-- A load without an upper bound (mode historical) is continued after its watermark, so a
-- rerun adds nothing twice.
WITH
log AS (
  SELECT "mode", "table_name", "range_start", "range_end", "watermark", "time"
  FROM "acme_src"."cdp_mcp_ingestion_log"
  WHERE "source_name" = 'shopify'
    AND "object_name" = '${datasource.name}'
    AND "status" = 'success'
),
split AS (
  SELECT COALESCE(
    (SELECT MIN("range_end") FROM log WHERE "mode" = 'historical' AND "range_end" <> ''),
    (SELECT MIN("range_start") FROM log WHERE "mode" = 'incremental'),
    -- first run: the start of the session's month (never before start_date)
    greatest('2023-09-01T00:00:00.000000Z', date_format(date_trunc('month', from_iso8601_timestamp('${session_time}')) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%i:%s.%fZ'))
  ) AS s
),
hist AS (
  SELECT
    (SELECT MAX("range_end") FROM log WHERE "mode" = 'historical' AND "range_end" <> '') AS last_end,
    (SELECT COUNT(*) FROM log WHERE "mode" = 'historical' AND "range_end" = '') AS open_loads,
    (SELECT MAX("watermark") FROM log WHERE "mode" = 'historical') AS last_watermark
)
SELECT
  CASE
    WHEN split.s = '' AND hist.open_loads > 0 AND hist.last_watermark IS NOT NULL THEN hist.last_watermark
    ELSE greatest('2023-09-01T00:00:00.000000Z', COALESCE(hist.last_end, '2023-09-01T00:00:00.000000Z'))
  END AS range_start,
  split.s AS range_end,
  CASE
    WHEN split.s = '' AND hist.open_loads > 0 AND hist.last_watermark IS NOT NULL THEN 'false'
    ELSE 'true'
  END AS from_inclusive,
  greatest(COALESCE((SELECT MAX("time") FROM log WHERE "table_name" = '${datasource.table_name}'), 0) - 3600, 0) AS loaded_after
FROM split CROSS JOIN hist
