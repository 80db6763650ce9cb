-- Staging's watermarks: one row per run and table (inc_log's columns and cutoff_rows, the
-- union rows at the watermark's second when it was recorded).
CREATE TABLE IF NOT EXISTS "acme_config"."staging_log" (
  "table_name" varchar,
  "watermark" bigint,
  "rows_added" bigint,
  "session_time" varchar,
  "time" bigint,
  "cutoff_rows" bigint
)
