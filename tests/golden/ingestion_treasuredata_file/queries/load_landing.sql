-- Append the rows of this object's landing table whose updated_at lies in the load's range
-- (read_bounds) to its table. cdp-mcp filled it from the local file with TD's bulk import.
-- Rows of the landing table outside the range stay out, so each row is loaded once
-- (docs/internals.md "Ingestion semantics").
INSERT INTO "acme_src"."${datasource.table_name}"
WITH bounds AS (
  SELECT
    TRY(from_iso8601_timestamp('${td.last_results.range_start}')) AS lo,
    '${td.last_results.from_inclusive}' = 'true' AS lo_inclusive,
    TRY(from_iso8601_timestamp(NULLIF('${td.last_results.range_end}', ''))) AS hi
)
SELECT landing.*
FROM "acme_src"."${datasource.landing_table}" AS landing
CROSS JOIN bounds
WHERE (COALESCE(TRY(from_iso8601_timestamp(trim(landing."updated_at"))), TRY(date_parse(trim(landing."updated_at"), '%Y-%m-%d %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%Y-%m-%d %H:%i:%s.%f')), TRY(date_parse(trim(landing."updated_at"), '%Y/%m/%d %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%Y/%m/%d')), TRY(date_parse(trim(landing."updated_at"), '%m/%d/%Y %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%m/%d/%Y')), TRY(date_parse(trim(landing."updated_at"), '%Y%m%d'))) > bounds.lo OR (bounds.lo_inclusive AND COALESCE(TRY(from_iso8601_timestamp(trim(landing."updated_at"))), TRY(date_parse(trim(landing."updated_at"), '%Y-%m-%d %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%Y-%m-%d %H:%i:%s.%f')), TRY(date_parse(trim(landing."updated_at"), '%Y/%m/%d %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%Y/%m/%d')), TRY(date_parse(trim(landing."updated_at"), '%m/%d/%Y %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%m/%d/%Y')), TRY(date_parse(trim(landing."updated_at"), '%Y%m%d'))) = bounds.lo))
  AND (bounds.hi IS NULL OR COALESCE(TRY(from_iso8601_timestamp(trim(landing."updated_at"))), TRY(date_parse(trim(landing."updated_at"), '%Y-%m-%d %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%Y-%m-%d %H:%i:%s.%f')), TRY(date_parse(trim(landing."updated_at"), '%Y/%m/%d %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%Y/%m/%d')), TRY(date_parse(trim(landing."updated_at"), '%m/%d/%Y %H:%i:%s')), TRY(date_parse(trim(landing."updated_at"), '%m/%d/%Y')), TRY(date_parse(trim(landing."updated_at"), '%Y%m%d'))) < bounds.hi)
