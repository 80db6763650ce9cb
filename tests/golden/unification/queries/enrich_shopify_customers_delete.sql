-- Remove from enriched_shopify_customers what enriched_shopify_customers_changes redoes: the rows holding a
-- value whose lookup row was written since, and the rows staging replaced since the last run
-- (the rows of each id restaged, and those without one from the
-- restage's first `time` on, as staging's delete.sql does).
DELETE FROM "cdp_unification_customer_360"."enriched_shopify_customers"
WHERE "enriched_shopify_customers"."load_timestamp" > ${td.last_results.stg_from}
  OR CAST("enriched_shopify_customers"."email" AS varchar) IN (
    SELECT l."id"
    FROM "cdp_unification_customer_360"."unified_id_lookup" l
    JOIN "cdp_unification_customer_360"."unified_id_keys" kt ON l."id_key_type" = kt."key_type"
    WHERE kt."key_name" = 'email' AND l."id_last_processed_at" > ${td.last_results.id_from_1}
  )
  OR CAST("enriched_shopify_customers"."phone" AS varchar) IN (
    SELECT l."id"
    FROM "cdp_unification_customer_360"."unified_id_lookup" l
    JOIN "cdp_unification_customer_360"."unified_id_keys" kt ON l."id_key_type" = kt."key_type"
    WHERE kt."key_name" = 'phone' AND l."id_last_processed_at" > ${td.last_results.id_from_1}
  )
  OR "id" IN (SELECT "id" FROM "cdp_unification_customer_360"."enriched_shopify_customers_changes" WHERE "id" IS NOT NULL)
  OR ("id" IS NULL AND "time" >= (
    SELECT MIN("time") FROM "cdp_unification_customer_360"."enriched_shopify_customers_changes"
    WHERE "id" IS NULL AND "load_timestamp" > ${td.last_results.stg_from}
  ))
