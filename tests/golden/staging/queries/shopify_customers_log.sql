-- Record this run's cutoff as the watermark of acme_stg.shopify_customers's transform, with the
-- union rows staged in its span and the rows at the cutoff's second it saw (bounds.sql).
INSERT INTO "acme_config"."staging_log" ("table_name", "watermark", "rows_added", "session_time", "time", "cutoff_rows")
SELECT
  'acme_stg.shopify_customers#3c68081a2e57',
  CAST(${td.last_results.to_time} AS bigint),
  (SELECT count(*) FROM "acme_src"."shopify_customers_hist_union" WHERE "time" >= ${td.last_results.from_time} AND "time" <= ${td.last_results.to_time}),
  '${session_time}',
  CAST(floor(to_unixtime(now())) AS bigint),
  CAST(${td.last_results.to_rows} AS bigint)
