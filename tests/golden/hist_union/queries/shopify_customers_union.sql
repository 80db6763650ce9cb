-- Append, per side, the rows above its watermark up to this run's cutoff, plus rows at the
-- watermark second that arrived after the last run. Columns are aligned by name: a column a
-- side lacks is a NULL of the union's type. No dedup here (staging dedups).
INSERT INTO "acme_src"."shopify_customers_hist_union" ("id", "first_name", "last_name", "email", "phone", "created_at", "updated_at", "time")
SELECT
  "id",
  "first_name",
  "last_name",
  "email",
  "phone",
  "created_at",
  "updated_at",
  "time"
FROM "acme_src"."shopify_customers_hist"
WHERE "time" > ${td.last_results.hist_from} AND "time" <= ${td.last_results.hist_to}
UNION ALL
SELECT * FROM (
SELECT
  "id",
  "first_name",
  "last_name",
  "email",
  "phone",
  "created_at",
  "updated_at",
  "time"
FROM "acme_src"."shopify_customers_hist"
WHERE "time" = ${td.last_results.hist_from}
EXCEPT ALL
SELECT "id", "first_name", "last_name", "email", "phone", "created_at", "updated_at", "time"
FROM "acme_src"."shopify_customers_hist_union"
WHERE "time" = ${td.last_results.hist_from}
) hist_late
UNION ALL
SELECT
  "id",
  "first_name",
  "last_name",
  "email",
  "phone",
  "created_at",
  "updated_at",
  "time"
FROM "acme_src"."shopify_customers"
WHERE "time" > ${td.last_results.inc_from} AND "time" <= ${td.last_results.inc_to}
UNION ALL
SELECT * FROM (
SELECT
  "id",
  "first_name",
  "last_name",
  "email",
  "phone",
  "created_at",
  "updated_at",
  "time"
FROM "acme_src"."shopify_customers"
WHERE "time" = ${td.last_results.inc_from}
EXCEPT ALL
SELECT "id", "first_name", "last_name", "email", "phone", "created_at", "updated_at", "time"
FROM "acme_src"."shopify_customers_hist_union"
WHERE "time" = ${td.last_results.inc_from}
) inc_late
