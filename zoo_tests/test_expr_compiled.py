"""Expressions are compiled once per text into closures (``zoo._expr``) and evaluating a layer's
arguments only looks at the values the parser marked as holding something to evaluate
(``YMap.dyn``, ``YList.flat``). These tests pin the values and the exact messages the evaluator
gives, errors included, and what marking skips and what it must not."""

from __future__ import annotations

from typing import Any

import pytest

import zoo
from zoo._expr import evaluate, interpolate
from zoo._values import resolve_values
from zoo._yaml import YList, YMap, parse_yaml

ENV: dict[str, Any] = {"a": 3, "b": 0, "c": 2.5, "s": "ab", "l": [1, 2, 3], "t": True, "big": 2**62, "planes": 64}
_KNOWN = "known: a, b, big, c, l, planes, s, t."
_ALLOWED = "abs, ceil, floor, int, len, make_divisible, max, min, round, sum, take"

VALUES: list[tuple[str, Any]] = [
    ("a * 4 - b", 12),
    ("planes // 3 % 7", 0),
    ("c * 2", 5.0),
    ("s[1]", "b"),
    ("l + l", [1, 2, 3, 1, 2, 3]),
    ("l[-1] if t else 0", 3),
    ("a if t else x.y", 3),  # a branch not taken is never reached, whatever it holds
    ("x.y if not t else a", 3),
    ("b or 0 or ''", ""),
    ("a and b and c", 0),
    ("1 < 2 < 3", True),
    ("1 < 3 < 2", False),
    ("a in l and 'a' not in s", False),
    ("make_divisible(30, 8)", 32),
    ("sum(take(l, 2))", 3),
    ("int('7') + round(2.5) + ceil(c) + floor(c) + abs(-1) + len(s)", 7 + 2 + 3 + 2 + 1 + 2),
    ("abs(-big * 2)", 2**63),
    ("-" * 300 + "1", 1),
    ("(" * 150 + "a" + ")" * 150, 3),
    ("  a  ", 3),
    ("true and not false", True),
]


@pytest.mark.parametrize(("text", "expected"), VALUES)
def test_values(text: str, expected: Any) -> None:
    result = evaluate(text, ENV)
    assert result == expected and type(result) is type(expected)


ERRORS: list[tuple[str, str]] = [
    ("'a' * 1000 * 1000", "repetition would give 1,000,000 items (more than 10,000) in ${'a' * 1000 * 1000}"),
    ("10 ** 10 ** 10", "exponent 10000000000 too large in ${10 ** 10 ** 10}"),
    ("'%999d' % 1", "'%' formatting of strings is not allowed in ${'%999d' % 1}"),
    ("round(5, -100)", "round() to -100 digits is not allowed in ${round(5, -100)}"),
    ("(-8) ** 0.5", "a complex value is not allowed in ${(-8) ** 0.5}"),
    ("1 / 0", "division by zero in ${1 / 0}"),
    ("l[5]", "index 5 out of range (length 3) in ${l[5]}"),
    ("l[1:2]", "slices are not allowed in ${l[1:2]}"),
    ("a[0]", "only lists can be indexed, by integers, in ${a[0]}"),
    ("[0] * 5000 + [0] * 5001", "value longer than 10,000 items in ${[0] * 5000 + [0] * 5001}"),
    ("1e308 * 10", "value is not finite in ${1e308 * 10}"),
    ("2 ** 63 + 1", "value too large in ${2 ** 63 + 1}"),
    ("a is b", "cannot evaluate ${a is b}: <class 'ast.Is'>"),
    ("a & b", "operator BitAnd is not allowed in ${a & b}"),
    ("~a", "operator Invert is not allowed in ${~a}"),
    ("1j", "constant 1j is not allowed in ${1j}"),
    ("__class__", "name '__class__' is not allowed in ${__class__}"),
    ("make_divisible(30, 0)", "cannot evaluate ${make_divisible(30, 0)}: make_divisible needs a positive integer divisor, got 0"),
    ("int('x')", "cannot evaluate ${int('x')}: invalid literal for int() with base 10: 'x'"),
    ("max(a=1)", f"call to 'max' is not allowed in ${{max(a=1)}}; allowed functions: {_ALLOWED}."),
    ("s.upper()", f"call to 's.upper' is not allowed in ${{s.upper()}}; allowed functions: {_ALLOWED}."),
    ("plane", "unknown parameter 'plane' in ${plane}; did you mean 'planes'?"),
    # the first error a walk from the left meets is the one reported
    ("unknwn + x.y", f"unknown parameter 'unknwn' in ${{unknwn + x.y}}; {_KNOWN}"),
    ("x.y + unknwn", "attribute is not allowed in ${x.y + unknwn}: expressions may use numbers, parameters, "
     f"arithmetic, comparisons, 'x if c else y', lists, indexing and {_ALLOWED}()"),
    ("~unknwn", f"unknown parameter 'unknwn' in ${{~unknwn}}; {_KNOWN}"),
    ("unknwn[1:2]", f"unknown parameter 'unknwn' in ${{unknwn[1:2]}}; {_KNOWN}"),
    ("[i for i in l]", "listcomp is not allowed in ${[i for i in l]}: expressions may use numbers, parameters, "
     f"arithmetic, comparisons, 'x if c else y', lists, indexing and {_ALLOWED}()"),
    ("a +", "invalid expression 'a +': invalid syntax"),
    ("-" * 600 + "1", "expression nested too deeply: '----------------------------------------'..."),
    ("1" * 1001, "expression longer than 1000 characters"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(zoo.ExpressionError) as info:
        evaluate(text, ENV)
    assert str(info.value) == message


def test_one_compiled_text_serves_every_scope() -> None:
    """The compiled form is shared by every evaluation of a text: it holds no values, and an
    error in one scope leaves it working in the next."""
    text = "planes * 4 if planes > 0 else unknown_name"
    assert evaluate(text, {"planes": 16}) == 64
    with pytest.raises(zoo.ExpressionError, match="unknown parameter 'unknown_name'"):
        evaluate(text, {"planes": 0})
    assert evaluate(text, {"planes": 5}) == 20
    with pytest.raises(zoo.ExpressionError, match="known: none"):
        evaluate("planes", {})


@pytest.mark.parametrize(("template", "expected"), [
    ("x${a}y${b}z", "x3y0z"),
    ("${a}", 3),
    ("  ${l}  ", [1, 2, 3]),
    ("${a} ${s}", "3 ab"),
    ("n${l}", "n[1, 2, 3]"),
    ("no expression", "no expression"),
])
def test_interpolate(template: str, expected: Any) -> None:
    assert interpolate(template, ENV) == expected
    assert interpolate(template, ENV) == expected  # the second use comes from the template's plan


@pytest.mark.parametrize(("template", "message"), [
    ("a${", "unterminated '${' in 'a${'; write ${expression}."),
    ("${a}${", "unterminated '${' in '${a}${'; write ${expression}."),
    ("pre${'q' * 6000}${'q' * 6000}", "interpolated text longer than 10,000 characters"),
    # an expression's own error comes before the unterminated rest
    ("${unknwn}${", f"unknown parameter 'unknwn' in ${{unknwn}}; {_KNOWN}"),
])
def test_interpolate_errors(template: str, message: str) -> None:
    with pytest.raises(zoo.ExpressionError) as info:
        interpolate(template, ENV)
    assert str(info.value) == message


_DOC = """\
layer:
  conv: {filters: 64, kernel: 3, name: c1}
  mixed: {filters: "${w * 2}", kernel: [3, 3], stride: 1, note: "$ {not one}"}
  sizes: [1, 2, 3]
  nested: [[1, 2], 3]
  exprs: [1, "${w}"]
  block: {layers: ["${w}"], when: true}
"""


def test_parser_marks_what_needs_evaluating() -> None:
    doc = parse_yaml(_DOC, "f.yaml")["layer"]
    assert doc["conv"].dyn == ()
    assert doc["mixed"].dyn == ("filters", "kernel")
    assert doc["sizes"].flat and not doc["nested"].flat and not doc["exprs"].flat
    assert doc["block"].dyn == ("layers",)
    assert YMap({"a": 1}).dyn is None and not YList([1]).flat  # made later: not known


def test_marked_values_evaluate_as_a_full_walk_would() -> None:
    doc = parse_yaml(_DOC, "f.yaml")["layer"]
    env = {"w": 8}
    conv = resolve_values(doc["conv"], env, None, "p")
    assert conv == {"filters": 64, "kernel": 3, "name": "c1"}
    mixed = resolve_values(doc["mixed"], env, None, "p")
    assert mixed == {"filters": 16, "kernel": [3, 3], "stride": 1, "note": "$ {not one}"}
    assert list(mixed) == list(doc["mixed"])  # key order kept
    assert type(mixed) is YMap and mixed.key_locs is doc["mixed"].key_locs and mixed.loc == doc["mixed"].loc
    assert type(mixed["kernel"]) is list  # a list comes out plain, as the walk gave it
    assert doc["mixed"]["filters"] == "${w * 2}"  # the parsed tree is never written to
    sizes = resolve_values(doc["sizes"], env, None, "p")
    assert sizes == [1, 2, 3] and type(sizes) is list and sizes is not doc["sizes"]
    assert resolve_values(doc["nested"], env, None, "p") == [[1, 2], 3]
    assert resolve_values(doc["exprs"], env, None, "p") == [1, 8]
    block = resolve_values(doc["block"], env, None, "p")
    assert block["layers"] is doc["block"]["layers"]  # layer lists are evaluated in their own scope
    # a mapping not made by the parser is walked whole
    assert resolve_values({"f": "${w}", "g": [{"h": "${w + 1}"}]}, env, None, "p") == {"f": 8, "g": [{"h": 9}]}


def test_marked_values_locate_errors() -> None:
    doc = parse_yaml(_DOC, "f.yaml")["layer"]
    with pytest.raises(zoo.ExpressionError) as info:
        resolve_values(doc["mixed"], {}, doc["mixed"].loc, "layers[0].mixed")
    assert (info.value.line, info.value.column) == (3, 11)  # the key of the failing value
    assert "unknown parameter 'w'" in str(info.value) and "layers[0].mixed.filters" in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("a: !!int x", "f.yaml:1:4: invalid YAML value: 'x' is not a YAML int"),
    ("a:\n  b: !!bool maybe", "f.yaml:2:6: invalid YAML value: 'maybe' is not a YAML bool"),
    ("a: !!float x", "f.yaml:1:4: invalid YAML value: 'x' is not a YAML float"),
])
def test_tagged_scalar_that_is_not_one_is_a_schema_error(text: str, message: str) -> None:
    """A standard tag on text it does not fit was a bare ValueError/KeyError from the constructor."""
    with pytest.raises(zoo.SchemaError) as info:
        parse_yaml(text, "f.yaml")
    assert str(info.value) == message


def test_tagged_scalars_that_fit() -> None:
    assert parse_yaml("a: [!!int 0o17, !!float 1, !!bool yes, !!null ~, !!str 5, 1_000, .inf]", "f.yaml") == {
        "a": [15, 1.0, True, None, "5", 1000, float("inf")],
    }
