-- The union of acme_src.shopify_orders_hist and acme_src.shopify_orders, created on the first run.
CREATE TABLE IF NOT EXISTS "acme_src"."shopify_orders_hist_union" (
  "id" bigint,
  "customer_email" varchar,
  "total_price" varchar,
  "currency" varchar,
  "created_at" varchar,
  "updated_at" varchar,
  "time" bigint
)
