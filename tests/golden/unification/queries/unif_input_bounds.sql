-- build = unif_input is not there: a prep rebuilt this run dropped it (or it never was).
-- Otherwise every prep's delta kept it up to date.
SELECT count(*) = 0 AS build
FROM information_schema.tables
WHERE table_schema = 'acme_stg' AND table_name = 'unif_input'
