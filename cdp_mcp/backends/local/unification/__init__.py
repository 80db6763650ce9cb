"""TD's ID unification on DuckDB: canonical_id and persistent_id, full and incremental.

On TD, the generated `id_unification.dig` posts config/unify.yml to TD's unification API;
on the local backend that `http_call>` is served here and writes the tables TD writes in
`cdp_unification_{name}`, with TD's columns (outputs.py, docs/internals.md), so the generated
enrichment and every reader run unchanged on either.

Semantics (each module's docstring has the details):
- A record (a row of unify.yml's tables) links every valid value it carries; a value is
  valid when not NULL, not in its key's `invalid_texts` and matching `valid_regexp`
  (extract.py). Only the keys in `merge_by_keys` link.
- Leader order (nodes.py): canonical_id = key priority (`merge_by_keys`), then value;
  persistent_id = earlier run first, then first seen (`time`), priority, value. The id is
  derived from the leader (outputs.py), so a persistent id changes only when its person
  merges with an older one, and then the older id survives.
- The loop is TD's own (td_loop.py): leaders follow their leaders, so a chain of n values
  needs ceil(log2(n - 1)) iterations. "Needs more iterations than allowed" means: after
  `merge_iterations` (`incremental_merge_iterations` on incremental runs) a component still
  has rows with different leaders. Such a component keeps TD's rows in `{id}_graph` (the
  next incremental run continues from them); each value takes its smallest leader, and if
  that leaves the component as several profiles it is reported as split.
  `do_not_merge_key`'s values are leaders that never move, so they never share a profile.
- Several ids (`canonical_ids` over their `source_tables`) run in one request, an id that
  merges others (`merge_by_canonical_ids`) after them, from their graphs (prior.py).
- Incremental (engine.py): the previous `{id}_graph` plus the records at or after the last
  watermark of `incremental_columns`; a changed unify.yml forces a full refresh. Usually
  only the profiles the new records touch are rewritten (delta.py).
- Then `run_enrichments` writes `enriched_{table}` (enrich.py) and `run_master_tables` the
  master tables (master.py); `keep_debug_tables` keeps `{id}_graph_unify_loop_{n}`.
- Over-merge (report.py): values carried by more than `over_merge_threshold` records are
  reported with the profile they joined; `{id}_cluster_report` keeps the report.

Entry points:
- `handle_unification_call(call)`: the local backend's handler (registered by default).
- `engine.unify(con, parse_request(body))`: run a workflow_call body on a DuckDB connection.
- `metrics.unification_metrics(con, cfg_or_names)`: metrics for the validate step.

This package's face holds only what the handler needs (no numpy, no scipy), so the local
backend imports it cheaply; the engine and the metrics are imported from their modules.
"""

from cdp_mcp.backends.local.unification.handler import handle_unification_call
from cdp_mcp.backends.local.unification.spec import UnificationError, UnifyRequest, parse_request

__all__ = ["UnificationError", "UnifyRequest", "handle_unification_call", "parse_request"]
