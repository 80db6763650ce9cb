-- Record what this run of enriched_shopify_orders read: the watermarks of the next run.
INSERT INTO "acme_config"."enrich_log" ("table_name", "watermark_name", "watermark", "session_time", "time")
SELECT 'cdp_unification_customer_360.enriched_shopify_orders#9f46b8297a16', 'load_timestamp', CAST(${td.last_results.stg_to} AS bigint), '${session_time}', CAST(floor(to_unixtime(now())) AS bigint)
UNION ALL
SELECT 'cdp_unification_customer_360.enriched_shopify_orders#9f46b8297a16', 'id:unified_id', CAST(${td.last_results.id_to_1} AS bigint), '${session_time}', CAST(floor(to_unixtime(now())) AS bigint)
