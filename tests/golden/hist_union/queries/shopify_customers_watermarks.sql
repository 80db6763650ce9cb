-- Per side: its watermark, the max `time` already unioned (-1 before the first run), kept in
-- inc_log under this pipeline's project_name; `_scan_start` is the first `time` above it.
SELECT
  hist_from,
  hist_from + 1 AS hist_scan_start,
  inc_from,
  inc_from + 1 AS inc_scan_start
FROM (
  SELECT
    (SELECT COALESCE(MAX("inc_value"), -1) FROM "acme_config"."inc_log" WHERE "table_name" = 'acme_src.shopify_customers_hist' AND "project_name" = 'acme_hist_union') AS hist_from,
    (SELECT COALESCE(MAX("inc_value"), -1) FROM "acme_config"."inc_log" WHERE "table_name" = 'acme_src.shopify_customers' AND "project_name" = 'acme_hist_union') AS inc_from
) marks
