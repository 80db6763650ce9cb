-- acme_stg.shopify_orders_prep_rows: per row of acme_stg.shopify_orders with a valid key value, its
-- key values (NULL when invalid), its staging key id and its `time`: what
-- a later run reads to know which values a restaged row held.
SELECT * FROM (
  SELECT
    s."id" AS "__row_key",
    CASE WHEN NULLIF(CAST(s."customer_email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."customer_email" AS varchar), ''), '.+@.+') AND COALESCE(s."customer_email_valid", false) THEN NULLIF(CAST(s."customer_email" AS varchar), '') END AS "email",
    s."time" AS "time"
  FROM "acme_stg"."shopify_orders" s

) v
WHERE (v."email" IS NOT NULL)
