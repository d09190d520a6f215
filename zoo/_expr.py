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
import keyword
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
    name = _BARE.get(value)
    if name is not None:  # ``${name}``, most expressions: the parameter's value, as ``load`` gives it
        found = env.get(name, _MISSING)
        if found is not _MISSING and not isinstance(found, (str, list)):
            return found
    plan = _plan(value)
    if isinstance(plan, str):  # the whole value is one expression
        return evaluate(plan, env)
    pieces, rest, unterminated = plan
    parts: list[str] = []
    total = 0
    for literal, text in pieces:
        piece = str(evaluate(text, env))
        parts += (literal, piece)
        total += len(literal) + len(piece)
        if total > MAX_ITEMS:  # many ${...} in one string add up
            raise ExpressionError(f"interpolated text longer than {MAX_ITEMS:,} characters")
    if unterminated:
        raise ExpressionError(f"unterminated '${{' in {value!r}", hint="write ${expression}")
    parts.append(rest)
    return "".join(parts)


_Plan = str | tuple[tuple[tuple[str, str], ...], str, bool]
_BARE: dict[str, str] = {}  # template -> the parameter it is, for templates that are only '${name}'
_MAX_BARE = 4096


@functools.lru_cache(maxsize=4096)
def _plan(value: str) -> _Plan:
    """How a template is put together, found once per distinct string (a block's templates repeat
    at every use): the text of its only expression, or its (literal, expression) pieces, the text
    after the last one, and whether that text holds an unterminated ``${``."""
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        text = whole.group(1)
        name = text.strip()
        # a plain ASCII name (ast would NFKC-normalize others) that ``_c_name`` loads from env
        if name.isascii() and name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__") \
                and len(text) <= _MAX_TEXT and len(_BARE) < _MAX_BARE:
            _BARE[value] = name
        return text
    pieces: list[tuple[str, str]] = []
    last = 0
    for match in _TEMPLATE.finditer(value):
        pieces.append((value[last : match.start()], match.group(1)))
        last = match.end()
    rest = value[last:]
    return tuple(pieces), rest, "${" in rest


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate one expression (the part inside ``${...}``) over ``env``."""
    if len(text) > _MAX_TEXT:
        raise ExpressionError(f"expression longer than {_MAX_TEXT} characters")
    try:
        return _compiled(text)(env)
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


def _parse(text: str) -> ast.Expression:
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"invalid expression {text!r}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError):
        raise ExpressionError(f"invalid expression {text!r}") from None


# -- the compiler
#
# Each distinct expression text is parsed and compiled once (a block's expressions repeat at every
# use) into a tree of closures, each ``(env) -> value``, carrying the checks its operator needs.
# The closures make the same checks in the same order as a walk over the syntax tree: a node that
# is not allowed compiles to a closure that raises when it is reached, so ``${c if true else x.y}``
# evaluates and the first error met is the one reported. Closures only: no Python code is compiled.

_Fn = Callable[[Mapping[str, Any]], Any]
_MISSING = object()


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> _Fn:
    """The closure tree of one expression (``text`` as written, for the messages)."""
    return _compile(_parse(text.strip()).body, text)


def _compile(node: ast.AST, text: str) -> _Fn:
    return _COMPILERS.get(type(node), _not_allowed)(node, text)


def _fail(message: str, hint: str = "") -> _Fn:
    def fail(env: Mapping[str, Any]) -> Any:
        raise ExpressionError(message, hint=hint)
    return fail


def _not_allowed(node: ast.AST, text: str) -> _Fn:
    return _fail(
        f"{type(node).__name__.lower()} is not allowed in ${{{text}}}: expressions "
        "may use numbers, parameters, arithmetic, comparisons, 'x if c else y', lists, "
        f"indexing and {', '.join(sorted(FUNCTIONS))}()"
    )


def _c_constant(node: ast.Constant, text: str) -> _Fn:
    value = node.value
    if not isinstance(value, (int, float, str, bool)) and value is not None:
        return _fail(f"constant {value!r} is not allowed in ${{{text}}}")
    return lambda env: value


def _c_name(node: ast.Name, text: str) -> _Fn:
    name = node.id
    if name.startswith("__"):
        return _fail(f"name {name!r} is not allowed in ${{{text}}}")

    def load(env: Mapping[str, Any]) -> Any:
        value = env.get(name, _MISSING)
        if value is not _MISSING:
            return _check_size(value, text) if isinstance(value, (str, list)) else value
        if name in _CONSTANT_NAMES:
            return _CONSTANT_NAMES[name]
        raise ExpressionError(
            f"unknown parameter {name!r} in ${{{text}}}",
            hint=did_you_mean(name, env) or f"known: {', '.join(sorted(env)) or 'none'}",
        )
    return load


def _c_binop(node: ast.BinOp, text: str) -> _Fn:
    op_type = type(node.op)
    op = _BINOPS.get(op_type)
    if op is None:
        return _fail(f"operator {op_type.__name__} is not allowed in ${{{text}}}")
    left, right = _compile(node.left, text), _compile(node.right, text)
    check = _BINOP_CHECKS.get(op_type)
    if check is None:
        return lambda env: _check_size(op(left(env), right(env)), text)

    def binop(env: Mapping[str, Any]) -> Any:
        a, b = left(env), right(env)
        check(a, b, text)
        return _check_size(op(a, b), text)
    return binop


def _check_pow(left: Any, right: Any, text: str) -> None:
    if isinstance(right, (int, float)) and abs(right) > 64:
        raise ExpressionError(f"exponent {right} too large in ${{{text}}}")


def _check_mod(left: Any, right: Any, text: str) -> None:
    if isinstance(left, str):  # '%999999999d' % 1 would build a gigabyte string: no printf formatting
        raise ExpressionError(f"'%' formatting of strings is not allowed in ${{{text}}}")


def _check_mult(left: Any, right: Any, text: str) -> None:
    if isinstance(left, (str, list)) or isinstance(right, (str, list)):
        seq, count = (left, right) if isinstance(left, (str, list)) else (right, left)
        if isinstance(count, int) and not isinstance(count, bool) and len(seq) * max(count, 0) > MAX_ITEMS:
            raise ExpressionError(
                f"repetition would give {len(seq) * count:,} items (more than {MAX_ITEMS:,}) in ${{{text}}}"
            )


def _check_add(left: Any, right: Any, text: str) -> None:
    if isinstance(left, (str, list)) and isinstance(right, (str, list)) and len(left) + len(right) > MAX_ITEMS:
        raise ExpressionError(f"value longer than {MAX_ITEMS:,} items in ${{{text}}}")


# checks made before an operator is applied: the result is checked after, but a too-long string
# or list must be refused before it is built
_BINOP_CHECKS: dict[type, Callable[[Any, Any, str], None]] = {
    ast.Pow: _check_pow, ast.Mod: _check_mod, ast.Mult: _check_mult, ast.Add: _check_add,
}


def _c_unaryop(node: ast.UnaryOp, text: str) -> _Fn:
    operand = _compile(node.operand, text)
    if isinstance(node.op, ast.USub):
        return lambda env: _check_size(-operand(env), text)
    if isinstance(node.op, ast.UAdd):
        return lambda env: _check_size(+operand(env), text)
    if isinstance(node.op, ast.Not):
        return lambda env: not operand(env)
    fail = _fail(f"operator {type(node.op).__name__} is not allowed in ${{{text}}}")

    def refused(env: Mapping[str, Any]) -> Any:
        operand(env)  # its errors come first, as they would in a walk
        return fail(env)
    return refused


def _c_boolop(node: ast.BoolOp, text: str) -> _Fn:
    values = [_compile(v, text) for v in node.values]
    if isinstance(node.op, ast.And):
        def all_of(env: Mapping[str, Any]) -> Any:
            result: Any = True
            for value in values:
                result = value(env)
                if not result:
                    return result
            return result
        return all_of

    def any_of(env: Mapping[str, Any]) -> Any:
        result: Any = False
        for value in values:
            result = value(env)
            if result:
                return result
        return result
    return any_of


def _c_compare(node: ast.Compare, text: str) -> _Fn:
    first = _compile(node.left, text)
    rest = [(type(op), _compile(right, text)) for op, right in zip(node.ops, node.comparators, strict=True)]

    def compare(env: Mapping[str, Any]) -> Any:
        left = first(env)
        for op_type, right_fn in rest:
            right = right_fn(env)
            if not _CMPOPS[op_type](left, right):  # 'is' has no entry: a KeyError, reported as such
                return False
            left = right
        return True
    return compare


def _c_ifexp(node: ast.IfExp, text: str) -> _Fn:
    test, body, orelse = _compile(node.test, text), _compile(node.body, text), _compile(node.orelse, text)
    return lambda env: body(env) if test(env) else orelse(env)


def _c_list(node: ast.List | ast.Tuple, text: str) -> _Fn:
    elts = [_compile(e, text) for e in node.elts]
    return lambda env: _check_size([e(env) for e in elts], text)


def _c_subscript(node: ast.Subscript, text: str) -> _Fn:
    container_fn = _compile(node.value, text)
    if isinstance(node.slice, ast.Slice):
        fail = _fail(f"slices are not allowed in ${{{text}}}")
        return lambda env: (container_fn(env), fail(env))
    index_fn = _compile(node.slice, text)

    def subscript(env: Mapping[str, Any]) -> Any:
        container, index = container_fn(env), index_fn(env)
        if not isinstance(container, (list, str)) or not isinstance(index, int):
            raise ExpressionError(f"only lists can be indexed, by integers, in ${{{text}}}")
        if not -len(container) <= index < len(container):
            raise ExpressionError(f"index {index} out of range (length {len(container)}) in ${{{text}}}")
        return container[index]
    return subscript


def _c_call(node: ast.Call, text: str) -> _Fn:
    func = node.func
    if not isinstance(func, ast.Name) or func.id not in FUNCTIONS or node.keywords:
        shown = func.id if isinstance(func, ast.Name) else ast.unparse(func)[:40]
        return _fail(f"call to {shown!r} is not allowed in ${{{text}}}", hint=f"allowed functions: {', '.join(sorted(FUNCTIONS))}")
    name = func.id
    arg_fns = [_compile(a, text) for a in node.args]

    def call(env: Mapping[str, Any]) -> Any:
        args = [a(env) for a in arg_fns]
        if name == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > 64:
            # round(5, -10**18) computes 10**(10**18) before answering: refuse the digit count
            raise ExpressionError(f"round() to {args[1]} digits is not allowed in ${{{text}}}")
        return _check_size(FUNCTIONS[name](*args), text)
    return call


_COMPILERS: dict[type, Callable[[Any, str], _Fn]] = {
    ast.Constant: _c_constant,
    ast.Name: _c_name,
    ast.BinOp: _c_binop,
    ast.UnaryOp: _c_unaryop,
    ast.BoolOp: _c_boolop,
    ast.Compare: _c_compare,
    ast.IfExp: _c_ifexp,
    ast.List: _c_list,
    ast.Tuple: _c_list,
    ast.Subscript: _c_subscript,
    ast.Call: _c_call,
}


def _check_size(value: Any, text: str) -> Any:
    """Every intermediate value is checked: numbers stay finite and below 2**63, strings and lists
    below MAX_ITEMS, and nothing outside the plain types (``(-8) ** 0.5`` is complex) survives."""
    if type(value) is int:  # the common case first (a bool is not ``int`` by type)
        if abs(value) > _MAX_INT:
            raise ExpressionError(f"value too large in ${{{text}}}")
        return value
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
