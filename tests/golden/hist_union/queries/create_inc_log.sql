-- Watermarks of incremental transforms: one row per run and source table. The columns of
-- TD's consultant plugins' inc_log, in their order, so a table either made works for both.
CREATE TABLE IF NOT EXISTS "acme_config"."inc_log" (
  "table_name" varchar,
  "project_name" varchar,
  "inc_value" bigint,
  "time" bigint
)
