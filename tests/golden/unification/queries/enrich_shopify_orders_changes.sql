-- enriched_shopify_orders: every row of acme_stg.shopify_orders, plus unified_id taken from the
-- first of these key columns whose value unified_id_lookup holds for that key (NULL if none):
--   1. customer_email (key email)
-- The lookup has one row per (id, id_key_type), so no staging row is repeated; it holds
-- the id in TD's column persistent_id; a key name's id_key_type is in unified_id_keys.
WITH changed AS (
  -- Only the rows this run redoes (enrich_runner.dig): staged since the last run, or holding
  -- a value whose lookup row was written since; picked before the joins.
  -- Picked by id on a scan of the key columns only, then read whole: filtering a
  -- scan of every column would cost most of a full build. (All rows of a picked
  -- id are redone: enrich_shopify_orders_delete.sql removes them all.)
  SELECT * FROM "acme_stg"."shopify_orders" s
  WHERE s."id" IN (
    SELECT r."id" FROM "acme_stg"."shopify_orders" r
    WHERE r."id" IS NOT NULL AND (r."load_timestamp" > ${td.last_results.stg_from}
        OR CAST(r."customer_email" AS varchar) IN (
          SELECT l."id"
          FROM "cdp_unification_customer_360"."unified_id_lookup" l
          JOIN "cdp_unification_customer_360"."unified_id_keys" kt ON l."id_key_type" = kt."key_type"
          WHERE kt."key_name" = 'email' AND l."id_last_processed_at" > ${td.last_results.id_from_1}
        ))
  )
  UNION ALL
  SELECT * FROM "acme_stg"."shopify_orders" s
  WHERE s."id" IS NULL AND (s."load_timestamp" > ${td.last_results.stg_from}
      OR CAST(s."customer_email" AS varchar) IN (
        SELECT l."id"
        FROM "cdp_unification_customer_360"."unified_id_lookup" l
        JOIN "cdp_unification_customer_360"."unified_id_keys" kt ON l."id_key_type" = kt."key_type"
        WHERE kt."key_name" = 'email' AND l."id_last_processed_at" > ${td.last_results.id_from_1}
      ))
)
SELECT
  s.*,
  k1."unified_id" AS "unified_id"
FROM changed s
LEFT JOIN (
  SELECT l."id", l."persistent_id" AS "unified_id"
  FROM "cdp_unification_customer_360"."unified_id_lookup" l
  JOIN "cdp_unification_customer_360"."unified_id_keys" kt ON l."id_key_type" = kt."key_type"
  WHERE kt."key_name" = 'email'
    -- only the values of the rows redone: the join then holds a few lookup rows, not all
    AND l."id" IN (SELECT CAST(c."customer_email" AS varchar) FROM changed c)
) k1
  ON k1."id" = CASE WHEN NULLIF(CAST(s."customer_email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."customer_email" AS varchar), ''), '.+@.+') AND COALESCE(s."customer_email_valid", false) THEN NULLIF(CAST(s."customer_email" AS varchar), '') END
