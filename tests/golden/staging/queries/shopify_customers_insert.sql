-- Add the new versions staged by changes.sql (delete.sql removed what they replace).
INSERT INTO "acme_stg"."shopify_customers" ("id", "first_name", "last_name", "email", "email_valid", "email_hash", "phone", "phone_valid", "phone_hash", "created_at", "created_at_std", "created_at_unixtime", "created_at_date", "updated_at", "updated_at_std", "updated_at_unixtime", "updated_at_date", "time", "source_system", "load_timestamp")
SELECT "id", "first_name", "last_name", "email", "email_valid", "email_hash", "phone", "phone_valid", "phone_hash", "created_at", "created_at_std", "created_at_unixtime", "created_at_date", "updated_at", "updated_at_std", "updated_at_unixtime", "updated_at_date", "time", "source_system", "load_timestamp"
FROM "acme_stg"."shopify_customers_stg_changes"
