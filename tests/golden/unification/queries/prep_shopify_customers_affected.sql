-- The key value combinations of shopify_customers_prep this run computes again: those the replaced
-- rows held and those the rows staged since hold.
SELECT r."email", r."phone"
FROM "acme_stg"."shopify_customers_prep_rows" r
WHERE (r."__row_key" IN (SELECT c."__row_key" FROM "acme_stg"."shopify_customers_prep_changes" c WHERE c."__row_key" IS NOT NULL)
    OR (r."__row_key" IS NULL AND r."time" >= (SELECT MIN(c."time") FROM "acme_stg"."shopify_customers_prep_changes" c WHERE c."__row_key" IS NULL)))
UNION
SELECT c."email", c."phone"
FROM "acme_stg"."shopify_customers_prep_changes" c
WHERE (c."email" IS NOT NULL OR c."phone" IS NOT NULL)
