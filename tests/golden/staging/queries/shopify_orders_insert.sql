-- Add the new versions staged by changes.sql (delete.sql removed what they replace).
INSERT INTO "acme_stg"."shopify_orders" ("id", "customer_email", "customer_email_valid", "customer_email_hash", "total_price", "currency", "created_at", "created_at_std", "created_at_unixtime", "created_at_date", "updated_at", "updated_at_std", "updated_at_unixtime", "updated_at_date", "time", "source_system", "load_timestamp")
SELECT "id", "customer_email", "customer_email_valid", "customer_email_hash", "total_price", "currency", "created_at", "created_at_std", "created_at_unixtime", "created_at_date", "updated_at", "updated_at_std", "updated_at_unixtime", "updated_at_date", "time", "source_system", "load_timestamp"
FROM "acme_stg"."shopify_orders_stg_changes"
