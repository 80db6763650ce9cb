-- acme_stg.shopify_orders_prep: what this run redoes. stg_from = the largest staging
-- load_timestamp the last run read (-1 if none); stg_to = the largest now.
-- rebuild = no log for this prep (first run, or unify.yml or the prep changed), no prep or
-- shopify_orders_prep_rows table, or staging rebuilt the table (no row staged at or before stg_from);
-- delta = otherwise, when rows were staged since; unif_input_built: unif_input is there to update.
WITH marks AS (
  SELECT
    (SELECT MAX("watermark") FROM "acme_config"."enrich_log" WHERE "table_name" = 'acme_stg.shopify_orders_prep#27317c3d9295' AND "watermark_name" = 'load_timestamp') AS stg_from,
    (SELECT COALESCE(MAX("load_timestamp"), -1) FROM "acme_stg"."shopify_orders") AS stg_to,
    (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'acme_stg' AND table_name IN ('shopify_orders_prep', 'shopify_orders_prep_rows')) AS built,
    (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'acme_stg' AND table_name = 'unif_input') AS unif_input_built
),
decided AS (
  SELECT m.*, (
    m.built < 2 OR m.stg_from IS NULL
    OR NOT EXISTS (SELECT 1 FROM "acme_stg"."shopify_orders" s WHERE s."load_timestamp" <= m.stg_from)
  ) AS rebuild
  FROM marks m
)
SELECT
  COALESCE(stg_from, -1) AS stg_from, stg_to, rebuild,
  NOT rebuild AND stg_to > stg_from AS delta,
  unif_input_built > 0 AS unif_input_built
FROM decided
