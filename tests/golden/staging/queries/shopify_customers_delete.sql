-- Remove what the new versions in shopify_customers_stg_changes replace: the rows of their
-- id values, and the rows with no id loaded at or after the watermark
-- (changes.sql stages those again).
DELETE FROM "acme_stg"."shopify_customers"
WHERE "id" IN (SELECT "id" FROM "acme_stg"."shopify_customers_stg_changes" WHERE "id" IS NOT NULL)
  OR ("id" IS NULL AND "time" >= ${td.last_results.from_time})
