-- The combinations shopify_orders_prep_affected lists, from the staged rows as they are now: the rows
-- of shopify_orders_prep_rows no restage replaced, and the rows staged since.
INSERT INTO "acme_stg"."shopify_orders_prep" ("email", "time")
SELECT v."email", MIN(v."time") AS "time"
FROM (
  SELECT r."email", r."time"
  FROM "acme_stg"."shopify_orders_prep_rows" r
  WHERE NOT (r."__row_key" IN (SELECT c."__row_key" FROM "acme_stg"."shopify_orders_prep_changes" c WHERE c."__row_key" IS NOT NULL)
    OR (r."__row_key" IS NULL AND r."time" >= (SELECT MIN(c."time") FROM "acme_stg"."shopify_orders_prep_changes" c WHERE c."__row_key" IS NULL)))
  UNION ALL
  SELECT c."email", c."time"
  FROM "acme_stg"."shopify_orders_prep_changes" c
  WHERE (c."email" IS NOT NULL)
) v
WHERE EXISTS (
    SELECT 1 FROM "acme_stg"."shopify_orders_prep_affected" a
    WHERE a."email" IS NOT DISTINCT FROM v."email"
  )
GROUP BY v."email"
