"""`${...}` evaluation with V8, against Digdag's template semantics."""

from __future__ import annotations

import threading

import pytest

from cdp_mcp.digdag.expr import ExprError, evaluate_config, render

PARAMS = {
    "session_date": "2026-01-01",
    "td": {"last_results": {"max_time": 1767225600, "name": None}},
    "tables": ["a", "b"],
    "n": 3,
}


def test_plain_text_is_untouched() -> None:
    assert render("SELECT 1", PARAMS) == "SELECT 1"


def test_values_render_like_digdag() -> None:
    # strings as-is, null -> "", numbers and lists as JSON
    text = "${session_date}|${td.last_results.name}|${n}|${tables}|${td.last_results}"
    assert render(text, PARAMS) == ('2026-01-01||3|["a","b"]|{"max_time":1767225600,"name":null}')


def test_expressions_are_javascript() -> None:
    assert render("${n * 2}-${tables.join('_')}-${session_date.replace(/-/g, '')}", PARAMS) == (
        "6-a_b-20260101"
    )
    assert render("${ {a: 1}.a }", PARAMS) == "1"  # braces inside an expression


def test_undefined_variable_names_the_expression() -> None:
    with pytest.raises(
        ExprError, match=r"\$\{missing_var\}.*ReferenceError: missing_var is not defined"
    ):
        render("x ${missing_var} y", PARAMS)


def test_undefined_property_is_empty_but_undefined_parent_fails() -> None:
    assert render("[${td.nothing}]", PARAMS) == "[]"
    with pytest.raises(ExprError, match=r"\$\{nothing.at_all\}"):
        render("${nothing.at_all}", PARAMS)


def test_syntax_error_is_reported() -> None:
    with pytest.raises(ExprError, match="SyntaxError"):
        render("${1 +}", PARAMS)


def test_operator_templates_and_dollars_are_kept() -> None:
    assert (
        render("key ${secret:td.apikey} costs $5 $$", PARAMS)
        == "key ${secret:td.apikey} costs $5 $"
    )


def test_evaluate_config_sees_earlier_keys_and_skips_subtasks() -> None:
    config = {
        "out": "t_${session_date}",
        "target": "${out}_final",
        "nested": {"list": ["${n}", 1, True]},
        "_do": {"+x": {"echo>": "${not_yet_defined}"}},
    }
    out = evaluate_config(config, PARAMS)
    assert out["out"] == "t_2026-01-01"
    assert out["target"] == "t_2026-01-01_final"
    assert out["nested"] == {"list": ["3", 1, True]}
    assert out["_do"] == config["_do"]


def test_concurrent_evaluation_from_threads() -> None:
    results: list[str] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                results.append(render("${x * 2}", {"x": i}))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(set(results)) == ["0", "2", "4", "6"]
