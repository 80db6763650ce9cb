-- acme_stg.shopify_orders_prep rebuilt from shopify_orders_prep_rows, which this run's rebuild just wrote:
-- the same rows queries/prep_shopify_orders.sql gives (each combination of valid key values
-- with its earliest `time`), without reading acme_stg.shopify_orders and testing its values again.
SELECT r."email", MIN(r."time") AS "time"
FROM "acme_stg"."shopify_orders_prep_rows" r
GROUP BY r."email"
