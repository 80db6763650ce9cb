-- acme_stg.shopify_products: the span of union rows this run stages, [from_time, to_time].
-- to_time = the largest `time` in the union now (this run's cutoff); from_time = the last
-- run's cutoff W, or W + 1 when the union still has exactly the rows at W that the last run
-- staged (a load gives all its rows one `time`: W's second is not staged again for nothing).
-- rebuild = no watermark (first run of this transform) or no staging table: build in full;
-- restage = otherwise, when the span has rows. to_rows = the rows at the cutoff now.
WITH log AS (
  SELECT "watermark", "cutoff_rows" FROM "acme_config"."staging_log" WHERE "table_name" = 'acme_stg.shopify_products#f24e39c2b1e8'
),
last_run AS (
  SELECT m.last_time, MAX(l."cutoff_rows") AS last_rows
  FROM (SELECT COALESCE(MAX("watermark"), -1) AS last_time FROM log) m
  LEFT JOIN log l ON l."watermark" = m.last_time
  GROUP BY m.last_time
),
seen AS (
  SELECT r.last_time, r.last_rows, count(u."time") AS rows_now
  FROM last_run r
  LEFT JOIN "acme_src"."shopify_products_hist_union" u ON u."time" = r.last_time
  GROUP BY r.last_time, r.last_rows
),
bounds AS (
  SELECT
    CASE WHEN s.last_rows = s.rows_now THEN s.last_time + 1 ELSE s.last_time END AS from_time,
    greatest(s.last_time, (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_products_hist_union")) AS to_time,
    (s.last_time < 0 OR (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'acme_stg' AND table_name = 'shopify_products') = 0) AS rebuild
  FROM seen s
),
cutoff AS (
  SELECT b.from_time, b.to_time, b.rebuild, count(u."time") AS to_rows
  FROM bounds b
  LEFT JOIN "acme_src"."shopify_products_hist_union" u ON u."time" = b.to_time
  GROUP BY b.from_time, b.to_time, b.rebuild
)
SELECT c.from_time, c.to_time, c.to_rows, c.rebuild, (NOT c.rebuild AND count(u."time") > 0) AS restage
FROM cutoff c
LEFT JOIN "acme_src"."shopify_products_hist_union" u ON u."time" >= c.from_time AND u."time" <= c.to_time
GROUP BY c.from_time, c.to_time, c.to_rows, c.rebuild
