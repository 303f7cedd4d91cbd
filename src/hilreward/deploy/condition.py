"""``success_when``: a small, safe condition on the robot's state that success must also meet (HIL-SERL's
per-task check, e.g. usb pickup: the classifier fires *and* ``state[0,0] > 0.4``).

    cond = StateCondition.parse("state[2] > 0.4 and gripper < 0.1", names=["x", "y", "z", "gripper"])
    cond(np.array([0.1, 0.0, 0.5, 0.05]))          # True
    cond(np.array([[...], [...]]))                  # (N,) booleans, one per row

What it reads: ``state[i]`` (entry ``i`` of ``observation.state``; a negative ``i`` counts from the end;
``state[0, i]`` is read as ``state[i]``, as HIL-SERL writes it for its one-frame stack), a name (``gripper``,
``state.gripper`` or ``state["gripper"]``) given by ``state_names`` or by the keys of a state passed as a dict.
What it does: numbers, ``+ - * /``, ``abs()``, comparisons (``< <= > >= == !=``, chained), ``and``, ``or``,
``not`` and parentheses. Numbers compare as float64 everywhere (in-process, over gRPC, relabelled), so a
float32 state of 0.4 reads 0.4000000059. Anything else (calls, attributes of other things, strings) is refused
when it is parsed: the text is read by :mod:`ast` and walked here, never ``eval``'d.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..utils import did_you_mean

MAX_LENGTH = 500
"""Longest ``success_when`` accepted."""

_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
            ast.Eq: np.equal, ast.NotEq: np.not_equal}
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

Value = Callable[["_State"], Any]
"""A compiled node: the state -> a number or boolean per row."""


@dataclass
class _State:
    """The state of N rows: a (N, D) array, or names -> (N,) arrays."""

    values: Optional[np.ndarray]
    named: Optional[dict[str, np.ndarray]]
    names: Sequence[str]

    def index(self, i: int, text: str) -> np.ndarray:
        if self.values is None and self.names and -len(self.names) <= i < len(self.names):
            return self.name(self.names[i])  # a dict state, entries named by state_names
        if self.values is None:
            raise InputError(f"success_when reads {text}, but the state is a dict {sorted(self.named or {})}: name "
                             "its entries instead")
        if not -self.values.shape[1] <= i < self.values.shape[1]:
            raise InputError(f"success_when reads {text}, but the state has {self.values.shape[1]} values")
        return self.values[:, i]

    def name(self, name: str) -> np.ndarray:
        if self.named is not None:
            if name not in self.named:
                raise InputError(f"success_when reads {name!r}, which the state dict lacks (it has "
                                 f"{sorted(self.named)})")
            return self.named[name]
        if name not in self.names:
            raise InputError(f"success_when reads {name!r}: pass the state as a dict, or state_names naming the "
                             "entries of observation.state")
        return self.index(list(self.names).index(name), name)


class StateCondition:
    """A parsed ``success_when``; call it on a state to get whether success may be paid (see the module doc)."""

    def __init__(self, text: str, root: Value, names: Sequence[str]) -> None:
        self.text, self._root, self.names = text, root, list(names)

    @classmethod
    def parse(cls, text: str, names: Optional[Sequence[str]] = None) -> "StateCondition":
        """Compile ``text``; ConfigError saying what is not allowed (``names``: the entries of observation.state,
        whose names the text may use; without them a name must come in a state dict)."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("success_when must be a condition such as 'state[0] > 0.4'")
        if len(text) > MAX_LENGTH:
            raise ConfigError(f"success_when is {len(text)} characters long; at most {MAX_LENGTH}")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConfigError(f"success_when={text!r} is not a condition ({exc.msg}); e.g. 'state[0] > 0.4 and "
                              "state[3] < 0.1'") from None
        body = tree.body
        if not isinstance(body, (ast.Compare, ast.BoolOp)) and not (isinstance(body, ast.UnaryOp) and
                                                                   isinstance(body.op, ast.Not)):
            raise ConfigError(f"success_when={text!r} must be a comparison (state[0] > 0.4), or several joined by "
                              "and / or / not")
        known = list(names or [])
        return cls(text, _compile(body, text, known), known)

    def __call__(self, state: Any) -> Any:
        """A bool for one state (a (D,) vector or a dict of numbers), (N,) bools for N rows ((N, D), or a dict of
        (N,) arrays)."""
        rows, one = _rows(state)
        out = np.asarray(self._root(_State(*rows, self.names)), dtype=bool)
        out = np.broadcast_to(out, (max(_count(rows), 1),)) if out.ndim == 0 else out
        return bool(out[0]) if one else out

    def __repr__(self) -> str:
        return f"StateCondition({self.text!r})"


def _count(rows: tuple[Optional[np.ndarray], Optional[dict[str, np.ndarray]]]) -> int:
    values, named = rows
    if values is not None:
        return values.shape[0]
    return len(next(iter(named.values()))) if named else 1


def _rows(state: Any) -> tuple[tuple[Optional[np.ndarray], Optional[dict[str, np.ndarray]]], bool]:
    """((N, D) values or None, names -> (N,) or None), and whether one state (not rows) was given."""
    if state is None:
        raise InputError("success_when needs the robot state: pass state= (observation.state) with the frames")
    if isinstance(state, Mapping):
        named = {str(k): np.atleast_1d(_numbers(v, str(k))).reshape(-1) for k, v in state.items()}
        one = all(np.ndim(_numbers(v, str(k))) == 0 for k, v in state.items())
        sizes = {len(v) for v in named.values()}
        if len(sizes) > 1:
            raise InputError(f"the state dict's entries have different lengths {sorted(sizes)}")
        return (None, named), one
    values = _numbers(state, "state")
    if values.ndim == 1:
        return (values[None], None), True
    if values.ndim == 2:
        return (values, None), False
    raise InputError(f"the state must be a vector (D,) or rows (N, D), got shape {values.shape}")


def _numbers(value: Any, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must hold numbers, got {type(value).__name__}") from None
    return arr


def _compile(node: ast.AST, text: str, names: list[str]) -> Value:
    """The node as a function of the state; ConfigError for anything outside the grammar."""
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, text, names) for v in node.values]
        join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        return lambda s: _reduce(join, [p(s) for p in parts])
    if isinstance(node, ast.UnaryOp):
        inner = _compile(node.operand, text, names)
        if isinstance(node.op, ast.Not):
            return lambda s: np.logical_not(inner(s))
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return lambda s: sign * inner(s)
    if isinstance(node, ast.Compare):
        terms = [_compile(t, text, names) for t in [node.left, *node.comparators]]
        ops = [_COMPARE[type(op)] for op in node.ops if type(op) in _COMPARE]
        if len(ops) != len(node.ops):
            raise _refused(node, text)
        return lambda s: _reduce(np.logical_and, [op(a, b) for op, a, b in zip(ops, *_pairs([t(s) for t in terms]))])
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _compile(node.left, text, names), _compile(node.right, text, names)
        op = _ARITHMETIC[type(node.op)]
        return lambda s: op(left(s), right(s))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs" \
            and len(node.args) == 1 and not node.keywords:
        inner = _compile(node.args[0], text, names)
        return lambda s: np.abs(inner(s))
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        number = float(node.value)
        return lambda s: number
    if isinstance(node, ast.Name) and node.id != "state":
        return _named(node.id, names, text)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "state":
        return _named(node.attr, names, text)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "state":
        return _subscript(node.slice, text, names)
    raise _refused(node, text)


def _subscript(index: ast.AST, text: str, names: list[str]) -> Value:
    if isinstance(index, ast.Tuple) and len(index.elts) == 2 and _integer(index.elts[0]) == 0:
        index = index.elts[1]  # HIL-SERL's state[0, i]: the one frame of its stack
    if isinstance(index, ast.Constant) and isinstance(index.value, str):
        return _named(index.value, names, text)
    i = _integer(index)
    if i is None:
        raise ConfigError(f"success_when={text!r}: state[...] takes an integer index (state[3]) or a name")
    label = f"state[{i}]"
    return lambda s: s.index(i, label)


def _integer(node: ast.AST) -> Optional[int]:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _integer(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _named(name: str, names: list[str], text: str) -> Value:
    if names and name not in names:
        raise ConfigError(f"success_when={text!r} reads {name!r}, which state_names lacks{did_you_mean(name, names)}; "
                          f"state_names: {', '.join(names)}")
    return lambda s: s.name(name)


def _pairs(values: list[Any]) -> tuple[list[Any], list[Any]]:
    return values[:-1], values[1:]


def _reduce(join: Callable[[Any, Any], Any], values: list[Any]) -> Any:
    out = values[0]
    for v in values[1:]:
        out = join(out, v)
    return out


def _refused(node: ast.AST, text: str) -> ConfigError:
    part = ast.get_source_segment(text.strip(), node) or type(node).__name__
    return ConfigError(f"success_when={text!r}: {part!r} is not allowed; use state[i] or a state name, numbers, "
                       "+ - * /, abs(), comparisons, and / or / not")


__all__ = ["StateCondition"]
