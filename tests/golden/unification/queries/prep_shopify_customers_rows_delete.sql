-- Remove the rows a restage replaced from shopify_customers_prep_rows (after the prep and unif_input
-- were computed from it, so a retried run finds the same combinations to compute again).
DELETE FROM "acme_stg"."shopify_customers_prep_rows"
WHERE ("acme_stg"."shopify_customers_prep_rows"."__row_key" IN (SELECT c."__row_key" FROM "acme_stg"."shopify_customers_prep_changes" c WHERE c."__row_key" IS NOT NULL)
    OR ("acme_stg"."shopify_customers_prep_rows"."__row_key" IS NULL AND "acme_stg"."shopify_customers_prep_rows"."time" >= (SELECT MIN(c."time") FROM "acme_stg"."shopify_customers_prep_changes" c WHERE c."__row_key" IS NULL)))
