-- Record what this run of shopify_orders_prep read: the watermark of the next run.
INSERT INTO "acme_config"."enrich_log" ("table_name", "watermark_name", "watermark", "session_time", "time")
SELECT 'acme_stg.shopify_orders_prep#27317c3d9295', 'load_timestamp', CAST(${td.last_results.stg_to} AS bigint), '${session_time}', CAST(floor(to_unixtime(now())) AS bigint)
