-- Record each side's cutoff as its new watermark, with the rows above the old watermark
-- (rows_added leaves out late rows at the old watermark second, see union.sql).
INSERT INTO "acme_config"."inc_log" ("table_name", "watermark", "rows_added", "session_time", "time")
SELECT
  'acme_src.shopify_products_hist',
  CAST(${td.last_results.hist_to} AS bigint),
  (SELECT count(*) FROM "acme_src"."shopify_products_hist" WHERE "time" > ${td.last_results.hist_from} AND "time" <= ${td.last_results.hist_to}),
  '${session_time}',
  CAST(floor(to_unixtime(now())) AS bigint)
UNION ALL
SELECT
  'acme_src.shopify_products',
  CAST(${td.last_results.inc_to} AS bigint),
  (SELECT count(*) FROM "acme_src"."shopify_products" WHERE "time" > ${td.last_results.inc_from} AND "time" <= ${td.last_results.inc_to}),
  '${session_time}',
  CAST(floor(to_unixtime(now())) AS bigint)
