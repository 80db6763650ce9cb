-- Add the rows enriched_shopify_orders_changes redid (delete.sql removed their older versions).
INSERT INTO "cdp_unification_customer_360"."enriched_shopify_orders"
SELECT * FROM "cdp_unification_customer_360"."enriched_shopify_orders_changes"
