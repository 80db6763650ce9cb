-- Remove shopify_customers's rows of the combinations shopify_customers_prep_affected lists from unif_input.
DELETE FROM "acme_stg"."unif_input"
WHERE "source_table" = 'shopify_customers'
  AND EXISTS (
    SELECT 1 FROM "acme_stg"."shopify_customers_prep_affected" a
    WHERE a."email" IS NOT DISTINCT FROM "acme_stg"."unif_input"."email" AND a."phone" IS NOT DISTINCT FROM "acme_stg"."unif_input"."phone"
  )
