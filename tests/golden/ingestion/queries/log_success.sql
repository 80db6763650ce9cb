-- Log a successful load of one object: its range, the rows of the table inside that range
-- (earlier loads hold only rows before it) and the watermark, the max parsed updated_at.
-- Only partitions loaded since the last successful load can hold rows of the range, and an
-- empty range (a backfill whose start reached the split point) none: that constant test
-- lets the engine skip the scan of the last batch, which the clock margin still includes.
INSERT INTO "acme_src"."cdp_mcp_ingestion_log" ("source_name", "object_name", "table_name", "mode", "status", "range_start", "range_end", "watermark", "rows_loaded", "session_time", "attempt_id", "message", "time")
WITH bounds AS (
  SELECT
    TRY(from_iso8601_timestamp('${td.last_results.range_start}')) AS lo,
    '${td.last_results.from_inclusive}' = 'true' AS lo_inclusive,
    TRY(from_iso8601_timestamp(NULLIF('${td.last_results.range_end}', ''))) AS hi
),
loaded AS (
  SELECT COALESCE(TRY(from_iso8601_timestamp(trim("updated_at"))), TRY(date_parse(trim("updated_at"), '%Y-%m-%d %H:%i:%s')), TRY(date_parse(trim("updated_at"), '%Y-%m-%d %H:%i:%s.%f')), TRY(date_parse(trim("updated_at"), '%Y/%m/%d %H:%i:%s')), TRY(date_parse(trim("updated_at"), '%Y/%m/%d')), TRY(date_parse(trim("updated_at"), '%m/%d/%Y %H:%i:%s')), TRY(date_parse(trim("updated_at"), '%m/%d/%Y')), TRY(date_parse(trim("updated_at"), '%m/%d/%Y %l:%i %p')), TRY(date_parse(trim("updated_at"), '%m/%d/%Y %l:%i:%s %p')), TRY(date_parse(trim("updated_at"), '%d.%m.%Y %H:%i:%s')), TRY(date_parse(trim("updated_at"), '%d.%m.%Y %H:%i')), TRY(date_parse(trim("updated_at"), '%d.%m.%Y')), TRY(date_parse(trim("updated_at"), '%Y%m%d'))) AS ts
  FROM "acme_src"."${datasource.table_name}"
  WHERE TD_TIME_RANGE("time", ${td.last_results.loaded_after}, NULL)
    AND (NULLIF('${td.last_results.range_end}', '') IS NULL
      OR TRY(from_iso8601_timestamp('${td.last_results.range_start}')) < TRY(from_iso8601_timestamp(NULLIF('${td.last_results.range_end}', ''))))
)
SELECT
  'shopify',
  '${datasource.name}',
  '${datasource.table_name}',
  '${ingest_mode}',
  'success',
  '${td.last_results.range_start}',
  '${td.last_results.range_end}',
  date_format(max(loaded.ts) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%i:%s.%fZ'),
  count(*),
  '${session_time}',
  '${attempt_id}',
  '',
  CAST(floor(to_unixtime(now())) AS bigint)
FROM loaded CROSS JOIN bounds
WHERE (loaded.ts > bounds.lo OR (bounds.lo_inclusive AND loaded.ts = bounds.lo))
  AND (bounds.hi IS NULL OR loaded.ts < bounds.hi)
