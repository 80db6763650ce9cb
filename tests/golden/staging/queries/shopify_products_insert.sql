-- Add the new versions staged by changes.sql (delete.sql removed what they replace).
INSERT INTO "acme_stg"."shopify_products" ("id", "title", "vendor", "price", "updated_at", "updated_at_std", "updated_at_unixtime", "updated_at_date", "time", "source_system", "load_timestamp")
SELECT "id", "title", "vendor", "price", "updated_at", "updated_at_std", "updated_at_unixtime", "updated_at_date", "time", "source_system", "load_timestamp"
FROM "acme_stg"."shopify_products_stg_changes"
