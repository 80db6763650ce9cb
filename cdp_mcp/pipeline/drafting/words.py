"""inspect_source's and draft_config's results in a few lines (the MCP text content)."""

from __future__ import annotations

from pydantic import BaseModel

from cdp_mcp.pipeline.drafting.models import DraftResult, InspectResult
from cdp_mcp.pipeline.summaries import next_words, summary


def _inspect(r: InspectResult) -> list[str]:
    lines = [f"source {r.source}: {len(r.objects)} objects"]
    for o in r.objects:
        ids = ", ".join(f"{i.column} ({i.key}, {100 * i.valid:.1f}% valid)" for i in o.identifiers)
        lines.append(
            f"  {o.name}: {o.rows:,} rows ({o.sampled:,} sampled); primary key "
            f"{o.primary_key.column or 'none found'}; identifiers: {ids or 'none'}"
        )
    lines.append(f"incremental field: {r.incremental_field.column or 'none'}")
    if r.skipped:
        lines.append(f"skipped: {'; '.join(r.skipped[:3])}")
    return lines


def _draft(r: DraftResult) -> list[str]:
    lines = [f"wrote {r.path}: sources {', '.join(r.sources)}"]
    lines.append(f"unification keys {', '.join(r.keys) or 'none'} over {len(r.tables)} tables")
    lines += [f"check: {n}" for n in r.notes[:5]]
    return lines


def drafting_summary(result: BaseModel) -> str:
    """The drafting tools' results in words; any other result as the pipeline's tools say it."""
    if isinstance(result, InspectResult):
        lines = _inspect(result)
    elif isinstance(result, DraftResult):
        lines = _draft(result)
    else:
        return summary(result)
    lines += next_words(result.next_action)
    lines.append("(the data is in the structured content)")
    return "\n".join(lines)
