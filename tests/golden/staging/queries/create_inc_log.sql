-- Watermarks of incremental transforms: one row per run and source table.
CREATE TABLE IF NOT EXISTS "acme_config"."inc_log" (
  "table_name" varchar,
  "watermark" bigint,
  "rows_added" bigint,
  "session_time" varchar,
  "time" bigint
)
