"""Digdag's `${...}` templates, evaluated as JavaScript by V8 (mini-racer).

Digdag semantics: every `${expr}` in a string is a JavaScript expression evaluated with the
task's parameters as variables; `null`/`undefined` render as "", strings as themselves and
anything else as JSON. `${word:...}` (e.g. `${secret:td.apikey}`) is left for the operator,
and `$$` in literal text is a `$`. A whole task config is evaluated in one V8 call, key by
key, each key seeing the keys evaluated before it (so an `_export`ed `${session_date}` is
already a date when a later key uses it).
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from py_mini_racer import MiniRacer

from cdp_mcp.core.errors import CdpError

# Keys whose values are subtask definitions, evaluated only when those subtasks run.
NOT_EVALUATED = ("_do", "_else_do", "_error", "_check")
_TIMEOUT_SEC = 10.0

_JS = r"""
var __fnCache = Object.create(null);

function __parts(input) {
  // [literal, expr, literal, expr, ..., literal]
  var out = [], lit = "", pos = 0;
  while (pos < input.length) {
    var i = input.indexOf("${", pos);
    if (i < 0) { lit += input.slice(pos); break; }
    lit += input.slice(pos, i);
    if (/^[a-z]+:/.test(input.slice(i + 2, i + 40))) { lit += "${"; pos = i + 2; continue; }
    var depth = 0, end = -1;
    for (var j = i + 2; j < input.length; j++) {
      var c = input.charAt(j);
      if (c === "{") depth++;
      else if (c === "}") { if (depth === 0) { end = j; break; } depth--; }
    }
    if (end < 0) { lit += input.slice(i); break; }
    out.push(lit.replace(/\$\$/g, "$"));
    out.push(input.slice(i + 2, end));
    lit = "";
    pos = end + 1;
  }
  out.push(lit.replace(/\$\$/g, "$"));
  return out;
}

function __evalExpr(code, scope) {
  var f = __fnCache[code];
  if (f === undefined) {
    f = new Function("__scope", "with (__scope) { return (" + code + "\n); }");
    __fnCache[code] = f;
  }
  return f(scope);
}

function __render(input, scope) {
  if (input.indexOf("$") < 0) return input;
  var parts = __parts(input), s = parts[0];
  for (var k = 1; k < parts.length; k += 2) {
    var v;
    try {
      v = __evalExpr(parts[k], scope);
    } catch (e) {
      throw { digdag: true, expr: parts[k], message: String(e) };
    }
    s += (v === null || v === undefined) ? "" : (typeof v === "string" ? v : JSON.stringify(v));
    s += parts[k + 1];
  }
  return s;
}

function __evalValue(value, scope, skip) {
  if (typeof value === "string") return __render(value, scope);
  if (Array.isArray(value)) return value.map(function (v) { return __evalValue(v, scope, skip); });
  if (value !== null && typeof value === "object") {
    var out = {};
    Object.keys(value).forEach(function (k) {
      out[k] = skip.indexOf(k) >= 0 ? value[k] : __evalValue(value[k], scope, skip);
    });
    return out;
  }
  return value;
}

function __guard(fn) {
  try {
    return JSON.stringify({ ok: fn() });
  } catch (e) {
    if (e && e.digdag) return JSON.stringify({ error: e.message, expr: e.expr });
    return JSON.stringify({ error: String(e), expr: null });
  }
}

function __template(input, params) {
  return __guard(function () { return __render(input, Object.assign({}, params)); });
}

function __evalConfig(config, params, skip) {
  return __guard(function () {
    var scope = Object.assign({}, params), out = {};
    Object.keys(config).forEach(function (k) {
      var v = skip.indexOf(k) >= 0 ? config[k] : __evalValue(config[k], scope, skip);
      out[k] = v;
      scope[k] = v;
    });
    return out;
  });
}
"""


class ExprError(CdpError):
    """A `${...}` expression failed; the message names the expression and the JS error."""

    def __init__(self, message: str, expr: str | None = None) -> None:
        self.expr = expr
        super().__init__(message)


class _JsonEncoder(json.JSONEncoder):
    """Parameters may carry query results: dates and decimals become JSON values."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, Decimal):
            return float(o)
        if isinstance(o, bytes):
            return o.hex()
        return str(o)


class _ContextPool:
    """V8 contexts reused across calls; each is used by one thread at a time."""

    def __init__(self) -> None:
        self._free: list[MiniRacer] = []
        self._lock = threading.Lock()
        # V8 runs on its own daemon threads; left to interpreter teardown, they can call
        # back into a finalizing Python and abort the process. Close them first.
        atexit.register(self.close_all)

    def close_all(self) -> None:
        with self._lock:
            contexts, self._free = self._free, []
        for ctx in contexts:
            with suppress(Exception):
                ctx.close()

    @contextmanager
    def context(self) -> Iterator[MiniRacer]:
        with self._lock:
            ctx = self._free.pop() if self._free else None
        if ctx is None:
            ctx = MiniRacer()
            ctx.eval(_JS)
        healthy = False
        try:
            yield ctx
            healthy = True
        finally:
            # A context that timed out or crashed is dropped, not reused.
            if healthy:
                with self._lock:
                    self._free.append(ctx)


_POOL = _ContextPool()


def _call(fn: str, *args: Any) -> Any:
    with _POOL.context() as ctx:
        try:
            raw = ctx.call(fn, *args, encoder=_JsonEncoder, timeout_sec=_TIMEOUT_SEC)
        except Exception as e:  # mini-racer's timeout/crash types vary by version
            raise ExprError(f"JavaScript evaluation failed: {e}") from None
    result = json.loads(raw)
    if "error" in result:
        expr = result.get("expr")
        if expr is None:
            raise ExprError(f"Failed to evaluate a template ({result['error']})")
        raise ExprError(f"Failed to evaluate a variable ${{{expr}}} ({result['error']})", expr)
    return result["ok"]


def render(text: str, params: Mapping[str, Any]) -> str:
    """Evaluate every `${...}` in `text` (e.g. a SQL file) with `params` as variables."""
    if "$" not in text:
        return text
    out = _call("__template", text, dict(params))
    return str(out)


def evaluate_config(
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    skip: tuple[str, ...] = NOT_EVALUATED,
) -> dict[str, Any]:
    """Evaluate every string of `config`, key by key, with `params` plus earlier keys in scope.

    Values under `skip` keys (subtask definitions) are returned unevaluated.
    """
    out = _call("__evalConfig", dict(config), dict(params), list(skip))
    assert isinstance(out, dict)
    return out
