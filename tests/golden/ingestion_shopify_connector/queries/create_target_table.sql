-- The object's table exists even when a load brings no rows, so log_success.sql can read it;
-- the load adds the source's other columns (schema on write).
CREATE TABLE IF NOT EXISTS "acme_src"."${datasource.table_name}" ("updated_at" varchar, "time" bigint)
