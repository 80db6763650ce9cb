-- The load log every ingestion workflow reads its bounds from and appends to.
CREATE TABLE IF NOT EXISTS "acme_src"."cdp_mcp_ingestion_log" (
  "source_name" varchar,
  "object_name" varchar,
  "table_name" varchar,
  "mode" varchar,
  "status" varchar,
  "range_start" varchar,
  "range_end" varchar,
  "watermark" varchar,
  "rows_loaded" bigint,
  "session_time" varchar,
  "attempt_id" varchar,
  "message" varchar,
  "time" bigint
)
