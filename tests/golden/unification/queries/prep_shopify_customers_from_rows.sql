-- acme_stg.shopify_customers_prep rebuilt from shopify_customers_prep_rows, which this run's rebuild just wrote:
-- the same rows queries/prep_shopify_customers.sql gives (each combination of valid key values
-- with its earliest `time`), without reading acme_stg.shopify_customers and testing its values again.
SELECT r."email", r."phone", MIN(r."time") AS "time"
FROM "acme_stg"."shopify_customers_prep_rows" r
GROUP BY r."email", r."phone"
