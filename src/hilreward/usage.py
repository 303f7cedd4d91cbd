"""``hilreward <command> --help``: every key a command takes, with its default and docstring, generated from the
command's option dataclasses (the docstring under each field is the documentation)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from functools import lru_cache
from typing import Any, Literal, get_args, get_origin

HELP_FLAGS = ("-h", "--help", "help")


class HelpRequested(Exception):
    """Raised by option parsing on ``--help``; the console script prints :func:`usage` and exits 0."""

    def __init__(self, *schemas: type, note: str = "", defaults: dict[type, Any] | None = None) -> None:
        super().__init__("help")
        self.schemas, self.note, self.defaults = schemas, note, defaults or {}


def wants_help(args: list[str]) -> bool:
    return any(a in HELP_FLAGS for a in args)


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it (base classes first, a subclass's win)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in zip(body, body[1:]):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and \
                    isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                    isinstance(after.value.value, str):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def type_name(tp: Any) -> str:
    """A short name of a field's type: ``int``, ``list[str]``, ``a|b|c`` for a choice, ``int?`` for Optional."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        rest = [a for a in args if a is not type(None)]
        return (type_name(rest[0]) + "?") if len(rest) == 1 else " or ".join(type_name(a) for a in rest)
    if origin in (list, tuple):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args if a is not Ellipsis)}]"
    return getattr(tp, "__name__", str(tp))


def keys(schema: type, prefix: str = "", defaults: Any = None) -> list[tuple[str, str, Any, str]]:
    """(dotted key, type, default, doc) of every field of ``schema``, nested dataclasses flattened."""
    hints = typing.get_type_hints(schema)
    docs = field_docs(schema)
    instance = defaults if defaults is not None else _default_instance(schema)
    out = []
    for f in dataclasses.fields(schema):
        tp, value = hints[f.name], getattr(instance, f.name, None)
        if dataclasses.is_dataclass(tp):
            out += keys(tp, f"{prefix}{f.name}.", value)
        else:
            out.append((f"{prefix}{f.name}", type_name(tp), value, docs.get(f.name, "")))
    return out


def _default_instance(schema: type) -> Any:
    try:
        return schema()
    except TypeError:  # a required field: no defaults to show
        return None


def usage(command: str, summary: str, schemas: tuple[type, ...], note: str = "", width: int = 100,
          defaults: dict[type, Any] | None = None) -> str:
    """The help text of ``hilreward <command>`` (``defaults``: instances whose values to show, e.g. a composed
    train config, instead of the dataclasses' own)."""
    lines = [f"usage: hilreward {command} [key=value ...]", "", summary, ""]
    if note:
        lines += [note, ""]
    for schema in schemas:
        if len(schemas) > 1:
            lines.append(f"{schema.__name__}:")
        for key, tp, default, doc in keys(schema, defaults=(defaults or {}).get(schema)):
            shown = "none" if default is None else str(default).lower() if isinstance(default, bool) else repr(
                default) if isinstance(default, str) else str(default)
            lines.append(f"  {key}={shown}  ({tp})")
            if doc:
                lines += textwrap.wrap(doc, width, initial_indent="      ", subsequent_indent="      ")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
