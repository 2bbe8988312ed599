"""Row templates: ``{column}`` placeholders in JSON templates, typed CSV cells, and the row parser
that turns a CSV row into a ``RowRecord`` of typed values.

A string that is exactly one placeholder becomes a typed value: ``{column}`` (text, or the type
the target asks for), ``{column:str}``, ``{column:bool}``, ``{column:int}``, ``{column:float}``
or ``{column:json}``. Placeholders inside a longer string are text. Shared by the generic
operation (``--body-template``) and the model operation (``--params-template``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError, InputError, RowError
from ..model import RowRecord
from .base import RowParser, parse_bool, validate_id

__all__ = [
    "PLACEHOLDER",
    "TYPES",
    "Template",
    "compile_json",
    "convert",
    "note_column",
    "text_template",
    "typed_row_parser",
    "whole_placeholder",
]

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)(?::([a-z]+))?\}")
TYPES = ("str", "bool", "int", "float", "json")
# "id" is not a template type: it marks a column validated as an identifier (a path segment).
_KINDS = frozenset((*TYPES, "id"))

Template = Callable[[Mapping[str, Any]], Any]
"""A compiled template: the row's typed values by column in, the filled-in value out."""


def convert(column: str, kind: str, text: str) -> Any:
    """One CSV cell as ``kind`` (a ``TYPES`` name or ``id``), or ``RowError`` naming ``column``."""
    if kind == "str":
        return text.strip()
    if kind == "id":
        return validate_id(column, text)
    if kind == "bool":
        return parse_bool(column, text)
    value = text.strip()
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        return json.loads(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise RowError(column, f"{shown!r} is not a valid {kind}") from None


def whole_placeholder(text: str) -> tuple[str, str | None] | None:
    """(column, explicit type or None) if ``text`` is exactly one placeholder, else None."""
    found = PLACEHOLDER.fullmatch(text)
    return None if found is None else (found.group(1), found.group(2))


def note_column(typed: dict[str, str], column: str, kind: str, option: str) -> None:
    """Record that ``column`` is read as ``kind``; a column used with two types is an error."""
    if kind not in TYPES:
        raise ConfigError(f"{option}: {{{column}:{kind}}}: type must be one of {TYPES}")
    known = typed.setdefault(column, kind)
    # A path column is a validated string ("id"): using it as text elsewhere is fine.
    if known != kind and not (known == "id" and kind == "str"):
        raise ConfigError(f"{option}: column {column!r} is used with two types")


def text_template(text: str, typed: dict[str, str], option: str) -> Template | None:
    """A string with placeholders inside as text (each column noted as ``str``), or None if it
    has none."""
    found = list(PLACEHOLDER.finditer(text))
    if not found:
        return None
    for m in found:
        note_column(typed, m.group(1), m.group(2) or "str", option)
    return lambda row: PLACEHOLDER.sub(lambda m: str(row[m.group(1)]), text)


def compile_json(node: Any, typed: dict[str, str], option: str) -> Template:
    """Turn a JSON template into a function of the row's typed values."""
    if isinstance(node, dict):
        parts = [(k, compile_json(v, typed, option)) for k, v in node.items()]
        return lambda row: {k: f(row) for k, f in parts}
    if isinstance(node, list):
        items = [compile_json(v, typed, option) for v in node]
        return lambda row: [f(row) for f in items]
    if isinstance(node, str):
        whole = whole_placeholder(node)
        if whole:
            column, kind = whole
            note_column(typed, column, kind or "str", option)
            return lambda row: row[column]
        text = text_template(node, typed, option)
        if text is not None:
            return text
    return lambda row: node


def typed_row_parser(
    header: Sequence[str],
    columns: Sequence[str],
    typed: Mapping[str, str],
    id_column: str,
    scope_column: str | None,
) -> RowParser:
    """A parser of rows under ``header`` into ``RowRecord``s: each of ``columns`` converted as
    ``typed`` says (``id`` when not named), ``user_id`` from ``id_column`` and ``account_id``
    from ``scope_column`` (empty if the CSV has no such column). ``InputError`` if the header
    lacks a needed column."""
    names = [h.strip().lower() for h in header]
    index = {n: i for i, n in enumerate(names)}
    missing = [c for c in columns if c.lower() not in index]
    if missing:
        raise InputError(
            f"the header does not fit: missing {', '.join(missing)}. "
            f"The templates need: {','.join(columns)}"
        )
    fields = [(c, typed.get(c, "id"), index[c.lower()]) for c in columns]
    assert all(kind in _KINDS for _, kind, _ in fields)
    width = len(header)
    scope = index.get(scope_column.lower(), -1) if scope_column else -1
    id_index = index[id_column.lower()]

    def parse(cells: Sequence[str], line: int) -> RowRecord:
        if len(cells) != width:
            raise RowError("", f"has {len(cells)} fields; the header has {width}")
        values: dict[str, Any] = {}
        for column, kind, i in fields:
            values[column] = convert(column, kind, cells[i])
        account = cells[scope].strip() if scope >= 0 else ""
        return RowRecord(account, str(cells[id_index]).strip(), values, line)

    return parse
