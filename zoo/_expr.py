"""``${...}`` expressions: a small arithmetic evaluator over declared parameters.

The text is parsed with :mod:`ast` (parsing runs nothing) and only a whitelist of node types is
walked: numbers, strings, booleans, parameter names, ``+ - * / // % **``, comparisons,
``and/or/not``, ``a if c else b``, list literals and indexing, and the functions in ``FUNCTIONS``.
Attributes, other calls, lambdas, comprehensions and dunder names are refused, so a file can
compute ``${planes * 4}`` but can never reach Python.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ExpressionError, did_you_mean

__all__ = ["FUNCTIONS", "evaluate", "interpolate", "is_expression"]

_MAX_INT = 2**63  # beyond any real size; keeps ``10 ** 10 ** 10`` from hanging the process
_MAX_TEXT = 1000  # an expression longer than this is not an architecture parameter
# Every intermediate value, not only the result, is bounded: a string or list longer than this is
# refused *before* it is built, so ``'a' * 1000 * 1000 * 1000`` stops at the second step.
MAX_ITEMS = 10_000

_TEMPLATE = re.compile(r"\$\{([^{}]*)\}")


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible`` (MobileNet, EfficientNet, RegNet widths): the nearest
    multiple of ``divisor``, at least ``min_value``, never more than 10% below ``v``."""
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor <= 0:
        raise ValueError(f"make_divisible needs a positive integer divisor, got {divisor!r}")
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # rounding down must not remove more than 10%
        new_v += divisor
    return new_v


def _sum(values: Any) -> Any:
    """Sum of a list of numbers (linear in the list, which the YAML limits already bound)."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError("sum needs a list of numbers")
    return sum(values)


def _take(values: Any, n: Any) -> list[Any]:
    """The first ``n`` items of a list: ``sum(take(depths, s))`` counts the blocks before stage ``s``."""
    if not isinstance(values, list) or not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError("take needs a list and a non-negative integer count")
    return values[:n]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "round": round,
    "len": len,
    "ceil": math.ceil,
    "floor": math.floor,
    "make_divisible": _make_divisible,
    "sum": _sum,
    "take": _take,
}


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_CONSTANT_NAMES = {"true": True, "false": False, "True": True, "False": False, "null": None, "None": None}


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def interpolate(value: str, env: Mapping[str, Any]) -> Any:
    """``"${a * 2}"`` gives the value itself; ``"layer${i + 1}"`` gives a string."""
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), env)
    parts: list[str] = []
    last = 0
    for match in _TEMPLATE.finditer(value):
        parts.append(value[last : match.start()])
        parts.append(str(evaluate(match.group(1), env)))
        last = match.end()
        if sum(map(len, parts)) > MAX_ITEMS:  # many ${...} in one string add up
            raise ExpressionError(f"interpolated text longer than {MAX_ITEMS:,} characters")
    rest = value[last:]
    if "${" in rest:
        raise ExpressionError(f"unterminated '${{' in {value!r}", hint="write ${expression}")
    parts.append(rest)
    return "".join(parts)


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate one expression (the part inside ``${...}``) over ``env``."""
    if len(text) > _MAX_TEXT:
        raise ExpressionError(f"expression longer than {_MAX_TEXT} characters")
    tree = _parse(text.strip())
    try:
        return _Evaluator(env, text).visit(tree.body)
    except ExpressionError:
        raise
    except ZeroDivisionError:
        raise ExpressionError(f"division by zero in ${{{text}}}") from None
    except RecursionError:
        raise ExpressionError(f"expression nested too deeply: {text[:40]!r}...") from None
    except MemoryError:
        raise ExpressionError(f"expression needs too much memory: {text[:40]!r}") from None
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, ArithmeticError) as exc:
        raise ExpressionError(f"cannot evaluate ${{{text}}}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ast.Expression:
    """Parsed once per distinct text: a block template's expressions repeat across every use."""
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {text!r}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError(f"invalid expression {text!r}") from None


class _Evaluator:
    def __init__(self, env: Mapping[str, Any], text: str) -> None:
        self.env = env
        self.text = text

    def visit(self, node: ast.AST) -> Any:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise ExpressionError(
                f"{type(node).__name__.lower()} is not allowed in ${{{self.text}}}: expressions "
                "may use numbers, parameters, arithmetic, comparisons, 'x if c else y', lists, "
                f"indexing and {', '.join(sorted(FUNCTIONS))}()"
            )
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            raise ExpressionError(f"constant {node.value!r} is not allowed in ${{{self.text}}}")
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        name = node.id
        if name.startswith("__"):
            raise ExpressionError(f"name {name!r} is not allowed in ${{{self.text}}}")
        if name in self.env:
            return _check_size(self.env[name], self.text) if isinstance(self.env[name], (str, list)) else self.env[name]
        if name in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[name]
        raise ExpressionError(
            f"unknown parameter {name!r} in ${{{self.text}}}",
            hint=did_you_mean(name, self.env) or f"known: {', '.join(sorted(self.env)) or 'none'}",
        )

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed in ${{{self.text}}}")
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > 64:
            raise ExpressionError(f"exponent {right} too large in ${{{self.text}}}")
        if isinstance(node.op, ast.Mod) and isinstance(left, str):
            # '%999999999d' % 1 would build a gigabyte string: no printf formatting
            raise ExpressionError(f"'%' formatting of strings is not allowed in ${{{self.text}}}")
        if isinstance(node.op, ast.Mult) and (isinstance(left, (str, list)) or isinstance(right, (str, list))):
            seq, count = (left, right) if isinstance(left, (str, list)) else (right, left)
            if isinstance(count, int) and not isinstance(count, bool) and len(seq) * max(count, 0) > MAX_ITEMS:
                raise ExpressionError(
                    f"repetition would give {len(seq) * count:,} items (more than {MAX_ITEMS:,}) in ${{{self.text}}}"
                )
        if isinstance(node.op, ast.Add) and isinstance(left, (str, list)) and isinstance(right, (str, list)):
            if len(left) + len(right) > MAX_ITEMS:
                raise ExpressionError(f"value longer than {MAX_ITEMS:,} items in ${{{self.text}}}")
        return _check_size(op(left, right), self.text)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.USub):
            return _check_size(-value, self.text)
        if isinstance(node.op, ast.UAdd):
            return _check_size(+value, self.text)
        if isinstance(node.op, ast.Not):
            return not value
        raise ExpressionError(f"operator {type(node.op).__name__} is not allowed in ${{{self.text}}}")

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = self.visit(value)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = self.visit(value)
            if result:
                return result
        return result

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.visit(right_node)
            if not _CMPOPS[type(op_node)](left, right):
                return False
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_List(self, node: ast.List) -> Any:
        return _check_size([self.visit(e) for e in node.elts], self.text)

    def visit_Tuple(self, node: ast.Tuple) -> Any:
        return _check_size([self.visit(e) for e in node.elts], self.text)

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        container = self.visit(node.value)
        if isinstance(node.slice, ast.Slice):
            raise ExpressionError(f"slices are not allowed in ${{{self.text}}}")
        index = self.visit(node.slice)
        if not isinstance(container, (list, str)) or not isinstance(index, int):
            raise ExpressionError(f"only lists can be indexed, by integers, in ${{{self.text}}}")
        if not -len(container) <= index < len(container):
            raise ExpressionError(f"index {index} out of range (length {len(container)}) in ${{{self.text}}}")
        return container[index]

    def visit_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            shown = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)[:40]
            raise ExpressionError(
                f"call to {shown!r} is not allowed in ${{{self.text}}}",
                hint=f"allowed functions: {', '.join(sorted(FUNCTIONS))}",
            )
        args = [self.visit(a) for a in node.args]
        if node.func.id == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > 64:
            # round(5, -10**18) computes 10**(10**18) before answering: refuse the digit count
            raise ExpressionError(f"round() to {args[1]} digits is not allowed in ${{{self.text}}}")
        return _check_size(FUNCTIONS[node.func.id](*args), self.text)


def _check_size(value: Any, text: str) -> Any:
    """Every intermediate value is checked: numbers stay finite and below 2**63, strings and lists
    below MAX_ITEMS, and nothing outside the plain types (``(-8) ** 0.5`` is complex) survives."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ExpressionError(f"value too large in ${{{text}}}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExpressionError(f"value is not finite in ${{{text}}}")
        return value
    if isinstance(value, (str, list)):
        if len(value) > MAX_ITEMS:
            raise ExpressionError(f"value longer than {MAX_ITEMS:,} items in ${{{text}}}")
        return value
    raise ExpressionError(f"a {type(value).__name__} value is not allowed in ${{{text}}}")
