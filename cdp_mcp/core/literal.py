"""Text from a config, written into a Digdag project so Digdag renders it literally.

Digdag evaluates `${...}` in every string of a `.dig` and of the YAML it `!include`s, and
`td>` / `td_load>` run the same template engine over their SQL and YAML files
(`Workspace.templateFile`). Its template (digdag.js) also turns `$$` into `$` in literal
text. So a `$` followed by `{` or `$` in a config value is written as `${"$"}`: a JavaScript
expression that evaluates to `$`, after which the next character is plain text again.
`${1+1}` is written `${"$"}{1+1}`, and Digdag renders `${1+1}`. Any other `$` (a regexp's
end anchor) is already literal and is left as it is, so text without `${` or `$$` is
written unchanged.

The order matters: a file is read by Digdag's template first and by SQL second, so SQL is
quoted first and then escaped (`sql_literal`); YAML is parsed first and templated second,
so a YAML value is escaped first and then dumped (generate/templating.py).

After the template, an operator may still read `${word:key}`: `http>` / `http_call>`
resolve `${secret:key}` in their content, headers and URL (UserSecretTemplate) and reject
any other `${word:key}`. No escape survives that pass, so text it would touch must not be
sent there (`operator_reads`).
"""

from __future__ import annotations

import re

from cdp_mcp.core.sqltext import sql_string

DOLLAR = '${"$"}'
_NEEDS_ESCAPE = re.compile(r"\$(?=[{$])")
# Digdag's io.digdag.util.UserSecretTemplate pattern, as the http operators apply it.
OPERATOR_TEMPLATE = re.compile(r"\$\{([\s\S]*?):([\s\S]+?)\}")


def digdag_literal(text: str) -> str:
    """`text` in the form Digdag's `${...}` evaluation renders back as `text`."""
    return _NEEDS_ESCAPE.sub(lambda _: DOLLAR, text)


def sql_literal(value: str) -> str:
    """A SQL string literal of `value`, in a file Digdag templates before the SQL runs."""
    return digdag_literal(sql_string(value))


def operator_reads(text: str) -> bool:
    """True when an `http>` operator would replace part of `text` (or refuse it) as a
    `${secret:...}` reference, after Digdag's template has rendered it."""
    return OPERATOR_TEMPLATE.search(text) is not None
