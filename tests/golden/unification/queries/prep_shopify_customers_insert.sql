-- The combinations shopify_customers_prep_affected lists, from the staged rows as they are now: the rows
-- of shopify_customers_prep_rows no restage replaced, and the rows staged since.
INSERT INTO "acme_stg"."shopify_customers_prep" ("email", "phone", "time")
SELECT v."email", v."phone", MIN(v."time") AS "time"
FROM (
  SELECT r."email", r."phone", r."time"
  FROM "acme_stg"."shopify_customers_prep_rows" r
  WHERE NOT (r."__row_key" IN (SELECT c."__row_key" FROM "acme_stg"."shopify_customers_prep_changes" c WHERE c."__row_key" IS NOT NULL)
    OR (r."__row_key" IS NULL AND r."time" >= (SELECT MIN(c."time") FROM "acme_stg"."shopify_customers_prep_changes" c WHERE c."__row_key" IS NULL)))
  UNION ALL
  SELECT c."email", c."phone", c."time"
  FROM "acme_stg"."shopify_customers_prep_changes" c
  WHERE (c."email" IS NOT NULL OR c."phone" IS NOT NULL)
) v
WHERE EXISTS (
    SELECT 1 FROM "acme_stg"."shopify_customers_prep_affected" a
    WHERE a."email" IS NOT DISTINCT FROM v."email" AND a."phone" IS NOT DISTINCT FROM v."phone"
  )
GROUP BY v."email", v."phone"
