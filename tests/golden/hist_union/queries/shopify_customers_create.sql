-- The union of acme_src.shopify_customers_hist and acme_src.shopify_customers, created on the first run.
CREATE TABLE IF NOT EXISTS "acme_src"."shopify_customers_hist_union" (
  "id" bigint,
  "first_name" varchar,
  "last_name" varchar,
  "email" varchar,
  "phone" varchar,
  "created_at" varchar,
  "updated_at" varchar,
  "time" bigint
)
