-- Append, per side, the rows above its watermark up to this run's cutoff, plus rows at the
-- watermark second that arrived after the last run. Columns are aligned by name: a column a
-- side lacks is a NULL of the union's type. No dedup here (staging dedups). TD_TIME_RANGE
-- keeps every scan to the partitions of the new rows.
INSERT INTO "acme_src"."shopify_products_hist_union" ("id", "title", "vendor", "price", "updated_at", "time")
SELECT
  "id",
  "title",
  "vendor",
  "price",
  "updated_at",
  "time"
FROM "acme_src"."shopify_products_hist"
WHERE TD_TIME_RANGE("time", ${td.last_results.hist_scan_start}, ${td.last_results.hist_scan_end})
UNION ALL
SELECT * FROM (
SELECT
  "id",
  "title",
  "vendor",
  "price",
  "updated_at",
  "time"
FROM "acme_src"."shopify_products_hist"
WHERE TD_TIME_RANGE("time", ${td.last_results.hist_from}, ${td.last_results.hist_late_end})
EXCEPT ALL
SELECT "id", "title", "vendor", "price", "updated_at", "time"
FROM "acme_src"."shopify_products_hist_union"
WHERE TD_TIME_RANGE("time", ${td.last_results.hist_from}, ${td.last_results.hist_late_end})
) hist_late
UNION ALL
SELECT
  "id",
  "title",
  "vendor",
  "price",
  "updated_at",
  "time"
FROM "acme_src"."shopify_products"
WHERE TD_TIME_RANGE("time", ${td.last_results.inc_scan_start}, ${td.last_results.inc_scan_end})
UNION ALL
SELECT * FROM (
SELECT
  "id",
  "title",
  "vendor",
  "price",
  "updated_at",
  "time"
FROM "acme_src"."shopify_products"
WHERE TD_TIME_RANGE("time", ${td.last_results.inc_from}, ${td.last_results.inc_late_end})
EXCEPT ALL
SELECT "id", "title", "vendor", "price", "updated_at", "time"
FROM "acme_src"."shopify_products_hist_union"
WHERE TD_TIME_RANGE("time", ${td.last_results.inc_from}, ${td.last_results.inc_late_end})
) inc_late
