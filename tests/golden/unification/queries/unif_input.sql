-- unif_input: the rows of every prep table; the one table config/unify.yml unifies.
-- Columns:
--   email (varchar): a value of key email
--   phone (varchar): a value of key phone
--   source_table (varchar): the staging table the row came from
--   time (bigint): when the combination was first seen (TD's incremental column)
SELECT
  "email",
  "phone",
  'shopify_customers' AS "source_table",
  "time"
FROM "acme_stg"."shopify_customers_prep"
UNION ALL
SELECT
  "email",
  CAST(NULL AS varchar) AS "phone",
  'shopify_orders' AS "source_table",
  "time"
FROM "acme_stg"."shopify_orders_prep"
