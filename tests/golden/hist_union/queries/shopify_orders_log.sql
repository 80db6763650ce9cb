-- Record each side's cutoff as its new watermark, with this pipeline's project_name (the
-- table is shared with TD's consultant plugins, whose rows carry theirs).
INSERT INTO "acme_config"."inc_log" ("table_name", "project_name", "inc_value", "time")
SELECT
  'acme_src.shopify_orders_hist',
  'acme_hist_union',
  CAST(${td.last_results.hist_to} AS bigint),
  CAST(floor(to_unixtime(now())) AS bigint)
UNION ALL
SELECT
  'acme_src.shopify_orders',
  'acme_hist_union',
  CAST(${td.last_results.inc_to} AS bigint),
  CAST(floor(to_unixtime(now())) AS bigint)
