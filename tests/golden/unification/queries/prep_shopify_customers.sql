-- Prep for ID unification: the distinct key values of acme_stg.shopify_customers.
-- Columns (varchar, NULL when the value is invalid for its key):
--   email: email as key email
--   phone: phone as key phone
--   time (bigint): the earliest staging `time` of the combination (when first loaded)
-- Rows without any valid value are dropped.
SELECT
  "email",
  "phone",
  MIN("time") AS "time"
FROM (
  SELECT
    CASE WHEN NULLIF(CAST(s."email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."email" AS varchar), ''), '.+@.+') AND COALESCE(s."email_valid", false) THEN NULLIF(CAST(s."email" AS varchar), '') END AS "email",
    CASE WHEN COALESCE(s."phone_valid", false) THEN NULLIF(CAST(s."phone" AS varchar), '') END AS "phone",
    s."time" AS "time"
  FROM "acme_stg"."shopify_customers" s
) v
WHERE "email" IS NOT NULL OR "phone" IS NOT NULL
GROUP BY "email", "phone"
