-- Remove the combinations shopify_customers_prep_affected lists from shopify_customers_prep (prep_insert.sql adds
-- them again as they are now; one no row holds any more stays out).
DELETE FROM "acme_stg"."shopify_customers_prep"
WHERE EXISTS (
    SELECT 1 FROM "acme_stg"."shopify_customers_prep_affected" a
    WHERE a."email" IS NOT DISTINCT FROM "acme_stg"."shopify_customers_prep"."email" AND a."phone" IS NOT DISTINCT FROM "acme_stg"."shopify_customers_prep"."phone"
  )
