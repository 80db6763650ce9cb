-- Per side: `_from` = its watermark in inc_log (-1 before the first run) and `_to` = this
-- run's cutoff (max `time` now, never below the watermark).
SELECT
  hist_from,
  greatest(hist_from, hist_max) AS hist_to,
  inc_from,
  greatest(inc_from, inc_max) AS inc_to
FROM (
  SELECT
    (SELECT COALESCE(MAX("watermark"), -1) FROM "acme_config"."inc_log" WHERE "table_name" = 'acme_src.shopify_products_hist') AS hist_from,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_products_hist") AS hist_max,
    (SELECT COALESCE(MAX("watermark"), -1) FROM "acme_config"."inc_log" WHERE "table_name" = 'acme_src.shopify_products') AS inc_from,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_products") AS inc_max
) marks
