-- cdp_unification_customer_360.enriched_shopify_orders: what this run redoes. stg_from / id_from_n = the
-- watermarks the last run logged (-1 if none); stg_to / id_to_n = the largest now.
-- rebuild = no log for this enrichment (first run, or unify.yml or the enrichment changed),
-- no enriched table, or staging rebuilt the table (no row staged at or before stg_from);
-- delta = otherwise: redo only the rows enrich_shopify_orders_changes.sql selects.
WITH log AS (
  SELECT "watermark_name", MAX("watermark") AS w
  FROM "acme_config"."enrich_log"
  WHERE "table_name" = 'cdp_unification_customer_360.enriched_shopify_orders#9f46b8297a16'
  GROUP BY "watermark_name"
),
marks AS (
  SELECT
    (SELECT w FROM log WHERE "watermark_name" = 'load_timestamp') AS stg_from,
    (SELECT COALESCE(MAX("load_timestamp"), -1) FROM "acme_stg"."shopify_orders") AS stg_to,
    (SELECT w FROM log WHERE "watermark_name" = 'id:unified_id') AS id_from_1,
    (SELECT COALESCE(MAX("id_last_processed_at"), -1) FROM "cdp_unification_customer_360"."unified_id_lookup") AS id_to_1,
    (SELECT count(*) FROM information_schema.tables WHERE table_schema = 'cdp_unification_customer_360' AND table_name = 'enriched_shopify_orders') AS built
),
decided AS (
  SELECT m.*, (
    m.built = 0 OR m.stg_from IS NULL OR m.id_from_1 IS NULL
    OR NOT EXISTS (SELECT 1 FROM "acme_stg"."shopify_orders" s WHERE s."load_timestamp" <= m.stg_from)
  ) AS rebuild
  FROM marks m
)
SELECT
  COALESCE(stg_from, -1) AS stg_from, stg_to,
  COALESCE(id_from_1, -1) AS id_from_1, id_to_1,
  rebuild, NOT rebuild AS delta
FROM decided
