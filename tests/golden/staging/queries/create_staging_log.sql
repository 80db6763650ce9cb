-- Staging's watermarks: one row per run and table (acme_config.inc_log's columns).
CREATE TABLE IF NOT EXISTS "acme_config"."staging_log" (
  "table_name" varchar,
  "watermark" bigint,
  "rows_added" bigint,
  "session_time" varchar,
  "time" bigint
)
