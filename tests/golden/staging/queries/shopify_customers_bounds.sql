-- acme_stg.shopify_customers: `from_time` = the watermark (the last run's cutoff, -1 before the
-- first run of this transform), `to_time` = this run's cutoff (the largest `time` in the
-- union now); `rebuild` = no watermark or no staging table yet: build it in full;
-- `restage` = otherwise, when the union has rows in [from_time, to_time] to restage.
WITH marks AS (
  SELECT
    (SELECT COALESCE(MAX("watermark"), -1) FROM "acme_config"."staging_log" WHERE "table_name" = 'acme_stg.shopify_customers#d2115d4a2e86') AS from_time,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_customers_hist_union") AS max_time,
    (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'acme_stg' AND table_name = 'shopify_customers') AS staged
),
bounds AS (
  SELECT from_time, greatest(from_time, max_time) AS to_time, (from_time < 0 OR staged = 0) AS rebuild
  FROM marks
)
SELECT b.from_time, b.to_time, b.rebuild, (NOT b.rebuild AND count(u."time") > 0) AS restage
FROM bounds b
LEFT JOIN "acme_src"."shopify_customers_hist_union" u ON u."time" >= b.from_time AND u."time" <= b.to_time
GROUP BY b.from_time, b.to_time, b.rebuild
