-- Add the rows staged since, with a valid key value, to shopify_customers_prep_rows.
INSERT INTO "acme_stg"."shopify_customers_prep_rows"
SELECT * FROM "acme_stg"."shopify_customers_prep_changes" c
WHERE (c."email" IS NOT NULL OR c."phone" IS NOT NULL)
