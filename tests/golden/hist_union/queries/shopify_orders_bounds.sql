-- Per side: `_from` = its watermark, `_to` = this run's cutoff (max `time` now, never below
-- the watermark) and the scan range [_scan_start, _scan_end) on `time` (= _from < time <=
-- _to). MAX(time) reads only the partitions above the watermark.
SELECT
  hist_from,
  greatest(hist_from, hist_max) AS hist_to,
  hist_from + 1 AS hist_scan_start,
  greatest(hist_from, hist_max) + 1 AS hist_scan_end,
  inc_from,
  greatest(inc_from, inc_max) AS inc_to,
  inc_from + 1 AS inc_scan_start,
  greatest(inc_from, inc_max) + 1 AS inc_scan_end
FROM (
  SELECT
    CAST(${td.last_results.hist_from} AS bigint) AS hist_from,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_orders_hist" WHERE TD_TIME_RANGE("time", ${td.last_results.hist_scan_start}, NULL)) AS hist_max,
    CAST(${td.last_results.inc_from} AS bigint) AS inc_from,
    (SELECT COALESCE(MAX("time"), -1) FROM "acme_src"."shopify_orders" WHERE TD_TIME_RANGE("time", ${td.last_results.inc_scan_start}, NULL)) AS inc_max
) marks
