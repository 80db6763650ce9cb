-- Prep for ID unification: the distinct key values of acme_stg.shopify_orders.
-- Columns (varchar, NULL when the value is invalid for its key):
--   email: customer_email as key email
--   time (bigint): the earliest staging `time` of the combination (when first loaded)
-- Rows without any valid value are dropped.
SELECT
  "email",
  MIN("time") AS "time"
FROM (
  SELECT
    CASE WHEN NULLIF(CAST(s."customer_email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."customer_email" AS varchar), ''), '.+@.+') AND COALESCE(s."customer_email_valid", false) THEN NULLIF(CAST(s."customer_email" AS varchar), '') END AS "email",
    s."time" AS "time"
  FROM "acme_stg"."shopify_orders" s
) v
WHERE "email" IS NOT NULL
GROUP BY "email"
