-- The rows of acme_stg.shopify_customers staged since the last prep run, as shopify_customers_prep_rows holds them.
SELECT
  s."id" AS "__row_key",
  CASE WHEN NULLIF(CAST(s."email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."email" AS varchar), ''), '.+@.+') AND COALESCE(s."email_valid", false) THEN NULLIF(CAST(s."email" AS varchar), '') END AS "email",
  CASE WHEN COALESCE(s."phone_valid", false) THEN NULLIF(CAST(s."phone" AS varchar), '') END AS "phone",
  s."time" AS "time"
FROM "acme_stg"."shopify_customers" s
WHERE s."load_timestamp" > ${td.last_results.stg_from}

