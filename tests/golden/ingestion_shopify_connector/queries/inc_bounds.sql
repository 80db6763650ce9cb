-- Range of the incremental load of one object: rows after the watermark (the max parsed
-- updated_at any successful load of this object brought, historical or incremental), or
-- from the split point S inclusive when nothing was loaded yet (docs/internals.md
-- "Ingestion semantics"). A row newer than the historical watermark was not there when
-- the backfill ran, so loading it here loads it once. No upper bound.
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
inc AS (
  SELECT (SELECT MAX("watermark") FROM log WHERE "watermark" <> '') AS last_watermark
)
SELECT
  COALESCE(inc.last_watermark, split.s) AS range_start,
  '' AS range_end,
  CASE WHEN inc.last_watermark IS NULL THEN 'true' ELSE 'false' END AS from_inclusive,
  greatest(COALESCE((SELECT MAX("time") FROM log WHERE "table_name" = '${datasource.table_name}'), 0) - 3600, 0) AS loaded_after
FROM split CROSS JOIN inc
