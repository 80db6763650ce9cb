-- acme_stg.shopify_orders: `from_time` = the watermark (the largest `time` already staged,
-- -1 before the first run of this transform), `to_time` = this run's cutoff (the largest
-- `time` in the union now), `rebuild` = no watermark or no staging table yet: build in full.
SELECT
  from_time,
  greatest(from_time, max_time) AS to_time,
  (from_time < 0 OR staged = 0) AS rebuild
FROM (
  SELECT
    (SELECT COALESCE(MAX("watermark"), -1) FROM "acme_config"."staging_log" WHERE "table_name" = 'acme_stg.shopify_orders#2a207e83f888') AS from_time,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_orders_hist_union") AS max_time,
    (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'acme_stg' AND table_name = 'shopify_orders') AS staged
) marks
