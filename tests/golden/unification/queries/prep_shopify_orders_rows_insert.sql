-- Add the rows staged since, with a valid key value, to shopify_orders_prep_rows.
INSERT INTO "acme_stg"."shopify_orders_prep_rows"
SELECT * FROM "acme_stg"."shopify_orders_prep_changes" c
WHERE (c."email" IS NOT NULL)
