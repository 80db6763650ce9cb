"""`http_call>` / `http>`: only TD's ID-unification call has a local meaning.

The generated `id_unification.dig` posts its config to
`https://api-cdp.<site>/unifications/workflow_call`; locally that call goes to the
registered unification handler. Any other URL would reach an outside service, which a local
dry run must not do, so the task fails saying so.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import urlparse

from cdp_mcp.backends.local.hooks import UNIFICATION_NOT_INSTALLED, UnificationCall
from cdp_mcp.backends.local.operators.base import OperatorContext, OperatorResult, TaskFailure
from cdp_mcp.backends.local.params import StoreUpdate
from cdp_mcp.core.literal import OPERATOR_TEMPLATE

_TD_DOMAINS = (".treasuredata.com", ".treasuredata.co.jp")


def is_unification_call(url: str) -> bool:
    """TD's `api-cdp` host, or a non-TD host standing in for it (the `cdp-mcp emulate`
    server, when a project was generated for `td_endpoint: http://127.0.0.1:N`)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if not parsed.path.rstrip("/").endswith("/unifications/workflow_call"):
        return False
    return host.startswith("api-cdp.") or not host.endswith(_TD_DOMAINS)


def _content(ctx: OperatorContext) -> Any:
    content = ctx.config.get("content")
    if isinstance(content, str) and str(ctx.config.get("content_format", "json")).lower() == "json":
        try:
            return json.loads(content)
        except json.JSONDecodeError:
            return content
    return content


def _check_operator_templates(node: Any) -> None:
    """Digdag's http operators resolve `${secret:key}` in every text of the content after the
    template ran, and refuse any other `${word:key}` (UserSecretTemplate). The local backend
    holds no secrets, so it refuses both: on TD a secret's value would be posted."""
    if isinstance(node, dict):
        for k, v in node.items():
            _check_operator_templates(k)
            _check_operator_templates(v)
    elif isinstance(node, list):
        for v in node:
            _check_operator_templates(v)
    elif isinstance(node, str):
        m = OPERATOR_TEMPLATE.search(node)
        if m is None:
            return
        if m.group(1).strip() == "secret":
            raise TaskFailure(
                f"http_call> content holds {m.group(0)}: Digdag would post the value of secret "
                f"{m.group(2).strip()!r} there (the local backend has no secrets)"
            )
        raise TaskFailure(f"http_call> content: Invalid parametrization: {m.group(0)!r}")


class HttpOperator:
    name: ClassVar[str] = "http_call"

    def run(self, ctx: OperatorContext) -> OperatorResult:
        url = str(ctx.command or ctx.config.get("uri") or "")
        if not url:
            raise TaskFailure("http_call>: needs a URL")
        if not is_unification_call(url):
            host = urlparse(url).hostname or url
            raise TaskFailure(
                f"http_call> to {host} is not run by the local backend (it would reach an outside "
                "service); only TD's ID-unification call runs locally"
            )
        handler = ctx.services.unification_handler
        if handler is None:
            raise TaskFailure(UNIFICATION_NOT_INSTALLED)
        content = _content(ctx)
        _check_operator_templates(content)
        method = str(ctx.config.get("method", "GET")).upper()
        ctx.log.info(f"{method} {url}: running ID unification locally")
        with ctx.services.cursor() as cur:
            call = UnificationCall(
                url=url,
                method=method,
                content=content,
                task_config=ctx.config,
                session_time=ctx.session_time,
                cursor=cur,
                log=ctx.log.info,
                cancel_requested=ctx.services.cancel_requested,
            )
            try:
                stored = handler(call)
            except TaskFailure:
                raise
            except Exception as e:
                if ctx.services.cancel_requested():
                    raise TaskFailure("ID unification interrupted by a kill request") from None
                raise TaskFailure(f"ID unification failed: {e}") from None
        return OperatorResult(store=StoreUpdate(stored) if stored else None)
