-- acme_stg.shopify_customers_prep_rows: per row of acme_stg.shopify_customers with a valid key value, its
-- key values (NULL when invalid), its staging key id and its `time`: what
-- a later run reads to know which values a restaged row held.
SELECT * FROM (
  SELECT
    s."id" AS "__row_key",
    CASE WHEN NULLIF(CAST(s."email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."email" AS varchar), ''), '.+@.+') AND COALESCE(s."email_valid", false) THEN NULLIF(CAST(s."email" AS varchar), '') END AS "email",
    CASE WHEN COALESCE(s."phone_valid", false) THEN NULLIF(CAST(s."phone" AS varchar), '') END AS "phone",
    s."time" AS "time"
  FROM "acme_stg"."shopify_customers" s

) v
WHERE (v."email" IS NOT NULL OR v."phone" IS NOT NULL)
