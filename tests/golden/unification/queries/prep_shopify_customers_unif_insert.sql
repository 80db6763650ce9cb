-- Add shopify_customers's rows of those combinations to unif_input again, from shopify_customers_prep as
-- prep_insert.sql left it (as queries/unif_input.sql selects them).
INSERT INTO "acme_stg"."unif_input" ("email", "phone", "source_table", "time")
SELECT
  x."email",
  x."phone",
  'shopify_customers',
  x."time"
FROM "acme_stg"."shopify_customers_prep" x
WHERE EXISTS (
    SELECT 1 FROM "acme_stg"."shopify_customers_prep_affected" a
    WHERE a."email" IS NOT DISTINCT FROM x."email" AND a."phone" IS NOT DISTINCT FROM x."phone"
  )
