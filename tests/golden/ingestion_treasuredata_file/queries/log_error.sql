-- Log a failed load of one object; an error row is never a bound or a watermark.
INSERT INTO "acme_src"."cdp_mcp_ingestion_log" ("source_name", "object_name", "table_name", "mode", "status", "range_start", "range_end", "watermark", "rows_loaded", "session_time", "attempt_id", "message", "time")
SELECT
  'shopify',
  '${datasource.name}',
  '${datasource.table_name}',
  '${ingest_mode}',
  'error',
  CAST(NULL AS varchar),
  CAST(NULL AS varchar),
  CAST(NULL AS varchar),
  CAST(0 AS bigint),
  '${session_time}',
  '${attempt_id}',
  substr('${String(error.message || "").replace(/'/g, "''")}', 1, 1000),
  CAST(floor(to_unixtime(now())) AS bigint)
