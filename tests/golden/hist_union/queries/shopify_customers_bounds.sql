-- Per side: `_from` = its watermark, `_to` = this run's cutoff (max `time` now, never below
-- the watermark) and the scan range [_scan_start, _scan_end) on `time` (= _from < time <=
-- _to). MAX(time) reads only the partitions above the watermark.
-- `_late_end` ends the scan for rows loaded in the watermark second after the last run
-- ([_from, _late_end)): those can exist only if the rows of that second in the sides
-- outnumber the union's, so with equal counts (the usual case) the range is empty and
-- the union's EXCEPT ALL compares nothing, instead of the whole batch of the last load.
SELECT
  hist_from,
  greatest(hist_from, hist_max) AS hist_to,
  hist_from + 1 AS hist_scan_start,
  greatest(hist_from, hist_max) + 1 AS hist_scan_end,
  CASE WHEN hist_union_at_mark = hist_hist_at_mark + hist_inc_at_mark
    THEN hist_from ELSE hist_from + 1 END AS hist_late_end,
  inc_from,
  greatest(inc_from, inc_max) AS inc_to,
  inc_from + 1 AS inc_scan_start,
  greatest(inc_from, inc_max) + 1 AS inc_scan_end,
  CASE WHEN inc_union_at_mark = inc_hist_at_mark + inc_inc_at_mark
    THEN inc_from ELSE inc_from + 1 END AS inc_late_end
FROM (
  SELECT
    CAST(${td.last_results.hist_from} AS bigint) AS hist_from,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_customers_hist" WHERE TD_TIME_RANGE("time", ${td.last_results.hist_scan_start}, NULL)) AS hist_max,
    (SELECT count(*) FROM "acme_src"."shopify_customers_hist_union" WHERE TD_TIME_RANGE("time", ${td.last_results.hist_from}, ${td.last_results.hist_scan_start})) AS hist_union_at_mark,
    (SELECT count(*) FROM "acme_src"."shopify_customers_hist" WHERE TD_TIME_RANGE("time", ${td.last_results.hist_from}, ${td.last_results.hist_scan_start})) AS hist_hist_at_mark,
    (SELECT count(*) FROM "acme_src"."shopify_customers" WHERE TD_TIME_RANGE("time", ${td.last_results.hist_from}, ${td.last_results.hist_scan_start})) AS hist_inc_at_mark,
    CAST(${td.last_results.inc_from} AS bigint) AS inc_from,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_customers" WHERE TD_TIME_RANGE("time", ${td.last_results.inc_scan_start}, NULL)) AS inc_max,
    (SELECT count(*) FROM "acme_src"."shopify_customers_hist_union" WHERE TD_TIME_RANGE("time", ${td.last_results.inc_from}, ${td.last_results.inc_scan_start})) AS inc_union_at_mark,
    (SELECT count(*) FROM "acme_src"."shopify_customers_hist" WHERE TD_TIME_RANGE("time", ${td.last_results.inc_from}, ${td.last_results.inc_scan_start})) AS inc_hist_at_mark,
    (SELECT count(*) FROM "acme_src"."shopify_customers" WHERE TD_TIME_RANGE("time", ${td.last_results.inc_from}, ${td.last_results.inc_scan_start})) AS inc_inc_at_mark
) marks
