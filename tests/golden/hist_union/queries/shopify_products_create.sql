-- The union of acme_src.shopify_products_hist and acme_src.shopify_products, created on the first run.
CREATE TABLE IF NOT EXISTS "acme_src"."shopify_products_hist_union" (
  "id" bigint,
  "title" varchar,
  "vendor" varchar,
  "price" double,
  "updated_at" varchar,
  "time" bigint
)
