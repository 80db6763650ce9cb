-- The enrichment's watermarks: per enriched table (named with a digest of unify.yml and its
-- enrichment), the largest staging load_timestamp and each id's largest lookup
-- id_last_processed_at its last run read.
CREATE TABLE IF NOT EXISTS "acme_config"."enrich_log" (
  "table_name" varchar,
  "watermark_name" varchar,
  "watermark" bigint,
  "session_time" varchar,
  "time" bigint
)
