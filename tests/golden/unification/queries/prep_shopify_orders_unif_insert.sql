-- Add shopify_orders's rows of those combinations to unif_input again, from shopify_orders_prep as
-- prep_insert.sql left it (as queries/unif_input.sql selects them).
INSERT INTO "acme_stg"."unif_input" ("email", "phone", "source_table", "time")
SELECT
  x."email",
  CAST(NULL AS varchar),
  'shopify_orders',
  x."time"
FROM "acme_stg"."shopify_orders_prep" x
WHERE EXISTS (
    SELECT 1 FROM "acme_stg"."shopify_orders_prep_affected" a
    WHERE a."email" IS NOT DISTINCT FROM x."email"
  )
