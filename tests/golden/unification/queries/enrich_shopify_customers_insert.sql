-- Add the rows enriched_shopify_customers_changes redid (delete.sql removed their older versions).
INSERT INTO "cdp_unification_customer_360"."enriched_shopify_customers"
SELECT * FROM "cdp_unification_customer_360"."enriched_shopify_customers_changes"
