-- The rows of acme_stg.shopify_orders staged since the last prep run, as shopify_orders_prep_rows holds them.
SELECT
  s."id" AS "__row_key",
  CASE WHEN NULLIF(CAST(s."customer_email" AS varchar), '') NOT IN ('test@test.com') AND regexp_like(NULLIF(CAST(s."customer_email" AS varchar), ''), '.+@.+') AND COALESCE(s."customer_email_valid", false) THEN NULLIF(CAST(s."customer_email" AS varchar), '') END AS "email",
  s."time" AS "time"
FROM "acme_stg"."shopify_orders" s
WHERE s."load_timestamp" > ${td.last_results.stg_from}

