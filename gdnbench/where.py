"""The ``where`` filter language of sweep configs: a Python-like boolean expression over case fields.

``parse_where`` accepts a small, fixed subset of Python's expression grammar (boolean operators,
comparisons, arithmetic, names, constants, tuples and lists) over a given set of names, and
``eval_where`` evaluates a parsed filter against one case's fields. Nothing else runs: no calls, no
attribute access, no subscripts, and sequence repetition or string formatting that would build a
huge object is refused before it is built, so a config file can never make gdnbench execute code or
exhaust memory. An expression that parses but fails on a case (a division by zero, comparing a
string with a number) raises :class:`WhereError`, which the config loader turns into one line.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare, ast.Eq,
    ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Name, ast.Load, ast.Constant,
    ast.Tuple, ast.List, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
)


def parse_where(expr: str, names: tuple[str, ...]) -> ast.Expression:
    """Parse a ``where`` filter (a Python-like boolean expression over case fields)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"'{expr}' is not a valid expression ({e.msg})") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ValueError(f"'{expr}': {type(node).__name__} is not allowed "
                             "(use comparisons, and/or/not, arithmetic, literals and case fields)")
        if isinstance(node, ast.Name) and node.id not in names:
            raise ValueError(f"'{expr}': unknown name '{node.id}' (allowed: {', '.join(names)})")
    return tree


class WhereError(ValueError):
    """A ``where`` expression that parses but cannot be evaluated on a case (one line)."""


#: Longest string / tuple a ``where`` expression may build (repetition beyond it is refused unbuilt).
WHERE_MAX_SEQUENCE = 10_000


def _guarded_mult(a: Any, b: Any) -> Any:
    """``a * b``, refusing a sequence repeated into more than WHERE_MAX_SEQUENCE items (before building it)."""
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, tuple, list)) and isinstance(n, int) and not isinstance(n, bool):
            if len(seq) * max(n, 0) > WHERE_MAX_SEQUENCE:
                raise WhereError(f"repeats a sequence into {len(seq) * n} items (at most {WHERE_MAX_SEQUENCE})")
    return operator.mul(a, b)


def _guarded_mod(a: Any, b: Any) -> Any:
    """``a % b`` for numbers only (``'%999999999d' % 1`` would format a gigabyte string)."""
    if isinstance(a, (str, bytes)):
        raise WhereError("string formatting with % is not supported")
    return operator.mod(a, b)


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _guarded_mult, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: _guarded_mod}
_COMPARISONS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
                ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
                ast.NotIn: lambda a, b: a not in b}


def eval_where(tree: ast.Expression, env: dict[str, Any]) -> bool:
    """Evaluate a parsed ``where`` expression against a case's fields (no ``eval``).

    Raises :class:`WhereError` (one line) when the expression cannot be evaluated on these fields:
    arithmetic errors (division by zero), operations between the wrong types (``layout > 3``), a
    sequence repeated beyond WHERE_MAX_SEQUENCE items."""
    try:
        return _eval_where(tree, env)
    except WhereError:
        raise
    except (ArithmeticError, TypeError, ValueError, MemoryError, RecursionError) as e:
        raise WhereError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()) from None


def _eval_where(tree: ast.Expression, env: dict[str, Any]) -> bool:

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.BoolOp):
            vals = (ev(v) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return (not v) if isinstance(node.op, ast.Not) else -v
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp)
                if not _COMPARISONS[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError(f"unsupported expression node {type(node).__name__}")  # parse_where prevents this

    return bool(ev(tree))
