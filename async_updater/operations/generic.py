"""A generic operation: any SigV4-signed REST call made once per CSV row.

    --method PATCH --service execute-api --path-template '/v1/users/{user_id}/flags'
    --body-template body.json      # {"enabled": "{enabled:bool}", "note": "set by {owner}"}

Path placeholders ``{column}`` are percent-encoded as exactly one segment each. In the body
template, a string that is exactly one placeholder becomes a typed JSON value (``:str`` by
default, or ``:bool``, ``:int``, ``:float``, ``:json``); placeholders inside longer strings are
text. Which column identifies a row in the report is ``id_column`` (default: the last path
placeholder) and which one scopes the rate limiter is ``scope_column`` (default ``account_id``
if the CSV has it).

Reading a user's state (for ``--read-before``, ``--skip-unchanged`` and ``undo``):

    --read-path-template '/v1/users/{user_id}/flags'      # GET; placeholders as in the path
    --read-field enabled=/flags/enabled --read-field seats=/flags/seats

Each ``--read-field COLUMN=POINTER`` says where in the JSON answer (an RFC 6901 JSON pointer)
the value of a template column is found; the value must have the column's type (a ``:bool``
column needs a JSON boolean...). Every column the templates use, other than the id and scope
columns, needs one: the state read must cover everything the write sets (so "unchanged" means
unchanged), and with the two ids it rebuilds the input row (so ``undo`` can restore it).

Operations can also come from other packages: an entry point in the group
``async_updater.operations`` naming a class (or factory) that returns an ``Operation``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from ..errors import ConfigError, StateError
from ..model import RowRecord
from ..transport.base import json_error_details
from .base import HttpRequest, Operation, RowParser, bool_cell, encode_segment
from .chime import ChimeUpdateUserSettings
from .template import PLACEHOLDER, Template, compile_json, typed_row_parser

__all__ = [
    "ENTRY_POINT_GROUP",
    "GenericOperation",
    "GenericReader",
    "load_operation",
    "parse_pointer",
    "parse_read_fields",
    "resolve_pointer",
]

ENTRY_POINT_GROUP = "async_updater.operations"
_METHODS = ("PUT", "POST", "PATCH", "DELETE")


class _PathTemplate:
    """``/v1/users/{user_id}/flags``: literal parts and placeholder columns, alternating."""

    __slots__ = ("columns", "parts")

    def __init__(self, template: str, option: str) -> None:
        if not template.startswith("/"):
            raise ConfigError(f"{option}: must start with '/'")
        if "?" in template or "#" in template:
            # The signer's canonical request has no query string: refuse rather than sign wrong.
            raise ConfigError(f"{option}: query strings and fragments are not supported")
        pieces = PLACEHOLDER.split(template)
        self.parts: list[str] = []
        self.columns: list[str] = []
        for i in range(0, len(pieces), 3):
            literal = pieces[i]
            if "{" in literal or "}" in literal:
                raise ConfigError(
                    f"{option}: cannot read {literal!r} (placeholders look like {{column}})"
                )
            self.parts.append(literal)
            if i + 1 < len(pieces):
                if pieces[i + 2] is not None:
                    raise ConfigError(f"{option}: path placeholders take no type")
                self.columns.append(pieces[i + 1])
        if not self.columns:
            raise ConfigError(f"{option}: needs at least one {{column}} placeholder")

    def render(self, values: Mapping[str, Any]) -> str:
        parts = self.parts
        path = parts[0]
        for i, column in enumerate(self.columns):
            path += encode_segment(str(values[column])) + parts[i + 1]
        return path


def parse_pointer(pointer: str, option: str = "--read-field") -> tuple[str, ...]:
    """The reference tokens of an RFC 6901 JSON pointer (``""`` is the whole document)."""
    if pointer and not pointer.startswith("/"):
        raise ConfigError(f"{option}: {pointer!r} is not a JSON pointer (they start with '/')")
    tokens = pointer.split("/")[1:]
    for token in tokens:
        if "~" in token.replace("~0", "").replace("~1", ""):
            raise ConfigError(f"{option}: {pointer!r}: '~' must be written ~0 (and '/' as ~1)")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


_MISSING = object()


def resolve_pointer(document: Any, tokens: Sequence[str]) -> Any:
    """The value at ``tokens`` (from ``parse_pointer``) in ``document``, or ``_MISSING``."""
    node = document
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                return _MISSING
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or (token != "0" and token.startswith("0")):
                return _MISSING
            index = int(token)
            if index >= len(node):
                return _MISSING
            node = node[index]
        else:
            return _MISSING
    return node


def parse_read_fields(specs: Sequence[str]) -> dict[str, str]:
    """``["enabled=/flags/enabled", ...]`` (the ``--read-field`` values) as column -> pointer."""
    fields: dict[str, str] = {}
    for spec in specs:
        column, sep, pointer = spec.partition("=")
        column = column.strip()
        if not sep or not column:
            raise ConfigError(f"--read-field: {spec!r} is not COLUMN=/json/pointer")
        if column in fields:
            raise ConfigError(f"--read-field: column {column!r} is given twice")
        fields[column] = pointer.strip()
    return fields


def _typed_value(kind: str, value: Any) -> bool:
    """Whether a JSON value read from an answer fits a column of ``kind``."""
    if kind == "bool":
        return type(value) is bool
    if kind == "int":
        return type(value) is int
    if kind == "float":
        return type(value) in (int, float) and math.isfinite(value)
    if kind in ("str", "id"):
        return isinstance(value, str)
    return True  # json: anything


def _cell(kind: str, value: Any) -> str:
    """A state value as an input cell that ``template.convert`` reads back."""
    if kind == "bool":
        return bool_cell(value)
    if kind in ("int", "float"):
        return repr(value)
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_KIND_NAMES = {
    "bool": "a boolean",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "id": "a string",
}


class GenericReader:
    """Reads the state of a ``GenericOperation``'s row: a GET on ``--read-path-template`` and
    one JSON pointer per column. Built by ``GenericOperation``; see the module docstring."""

    __slots__ = ("_fields", "_path", "fields", "id_column", "restore_columns", "scope_column")

    def __init__(
        self,
        path: _PathTemplate,
        fields: Sequence[tuple[str, str, tuple[str, ...], str]],
        restore_columns: tuple[str, ...],
        id_column: str,
        scope_column: str | None,
    ) -> None:
        self._path = path
        self._fields = fields  # (column, pointer as given, tokens, kind)
        self.fields = tuple(column for column, _, _, _ in fields)
        self.restore_columns = restore_columns
        self.id_column = id_column
        self.scope_column = scope_column

    def request(self, record: RowRecord) -> HttpRequest:
        return HttpRequest("GET", self._path.render(record.values), b"")

    def parse(self, body: bytes) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except ValueError:
            text = " ".join(body.decode("utf-8", "replace").split()) or "(empty)"
            raise StateError(f"the answer is not JSON: {text[:120]}") from None
        state: dict[str, Any] = {}
        for column, pointer, tokens, kind in self._fields:
            value = resolve_pointer(document, tokens)
            if value is _MISSING:
                raise StateError(f"the answer has nothing at {pointer or '(root)'} ({column})")
            if not _typed_value(kind, value):
                raise StateError(
                    f"{pointer or '(root)'} ({column}) is {json.dumps(value)[:60]}, "
                    f"not {_KIND_NAMES.get(kind, 'a JSON value')}"
                )
            state[column] = value
        return state

    def desired(self, record: RowRecord) -> dict[str, Any]:
        values = record.values
        return {column: values[column] for column in self.fields}

    def restore_row(self, account_id: str, user_id: str, state: Mapping[str, Any]) -> list[str]:
        kinds = {column: kind for column, _, _, kind in self._fields}
        cells: list[str] = []
        for column in self.restore_columns:
            if column == self.scope_column:
                cells.append(account_id)
            elif column == self.id_column:
                cells.append(user_id)
            else:
                kind = kinds[column]
                value = state.get(column, _MISSING)
                if value is _MISSING:
                    raise StateError(f"{column} is missing")
                if not _typed_value(kind, value):
                    raise StateError(
                        f"{column} is {json.dumps(value)[:60]}, "
                        f"not {_KIND_NAMES.get(kind, 'a JSON value')}"
                    )
                cells.append(_cell(kind, value))
        return cells


class GenericOperation:
    """One templated SigV4 request per row. See the module docstring for the template rules."""

    __slots__ = (
        "_body",
        "_path",
        "_typed",
        "columns",
        "content_type",
        "id_column",
        "method",
        "name",
        "reader",
        "scope_column",
        "service",
    )

    def __init__(
        self,
        *,
        service: str,
        path_template: str,
        method: str = "PUT",
        body_template: Any = None,
        id_column: str | None = None,
        scope_column: str | None = "account_id",
        content_type: str = "application/json",
        name: str | None = None,
        read_path_template: str | None = None,
        read_fields: Mapping[str, str] | None = None,
    ) -> None:
        method = method.upper()
        if method not in _METHODS:
            raise ConfigError(f"--method: {method!r} is not one of {', '.join(_METHODS)}")
        if not service or not re.fullmatch(r"[a-z0-9-]+", service):
            raise ConfigError(f"--service: {service!r} is not a SigV4 signing name")
        self._path = _PathTemplate(path_template, "--path-template")
        # The name goes into the report's meta file: a resume with other templates is refused.
        digest = hashlib.sha256(json.dumps(body_template, sort_keys=True).encode()).hexdigest()
        self.name = name or f"generic {method} {service} {path_template} body:{digest[:12]}"
        self.method = method
        self.service = service
        self.content_type = content_type
        path_columns = self._path.columns
        self._typed: dict[str, str] = {c: "id" for c in path_columns}
        self._body: Template | None = None
        if body_template is not None:
            self._body = compile_json(body_template, self._typed, "--body-template")
        self.id_column = id_column or path_columns[-1]
        self.scope_column = scope_column
        needed = dict.fromkeys([*self._typed, self.id_column])
        self.columns: tuple[str, ...] = tuple(needed)
        self.reader: GenericReader | None = None
        if read_path_template is not None or read_fields:
            self.reader = self._make_reader(read_path_template, read_fields or {})

    def _make_reader(self, template: str | None, fields: Mapping[str, str]) -> GenericReader:
        if template is None:
            raise ConfigError("--read-field: only used with --read-path-template")
        path = _PathTemplate(template, "--read-path-template")
        foreign = [c for c in path.columns if c not in self._path.columns]
        if foreign:
            raise ConfigError(
                f"--read-path-template: {{{foreign[0]}}} is not a placeholder of "
                "--path-template (the read must address the same user as the write)"
            )
        ids = {self.id_column, self.scope_column}
        for column in fields:
            if column in ids:
                raise ConfigError(
                    f"--read-field: {column!r} is the id or scope column; the report holds it"
                )
            if column not in self.columns:
                raise ConfigError(
                    f"--read-field: {column!r} is not a column the templates use "
                    f"({', '.join(c for c in self.columns if c not in ids)})"
                )
        missing = [c for c in self.columns if c not in ids and c not in fields]
        if missing:
            raise ConfigError(
                f"--read-field: none for {', '.join(missing)}: every column the write sets "
                "needs one, so that 'unchanged' means unchanged and undo can restore it"
            )
        specs = [
            (
                column,
                fields[column],
                parse_pointer(fields[column], f"--read-field {column}"),
                self._typed.get(column, "id"),
            )
            for column in self.columns
            if column in fields
        ]
        restore = self.columns
        if self.scope_column and self.scope_column not in restore:
            restore = (self.scope_column, *restore)
        return GenericReader(path, specs, restore, self.id_column, self.scope_column)

    def row_parser(self, header: Sequence[str]) -> RowParser:
        return typed_row_parser(
            header, self.columns, self._typed, self.id_column, self.scope_column
        )

    def error_parser(self, status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        return json_error_details(status, headers, body)

    def build(self, record: RowRecord) -> HttpRequest:
        values = record.values
        path = self._path.render(values)
        body = b""
        if self._body is not None:
            body = json.dumps(self._body(values), separators=(",", ":")).encode()
        return HttpRequest(self.method, path, body, self.content_type)


def load_operation(name: str) -> Operation:
    """The operation registered under ``name`` (built-in or from an entry point)."""
    if name in ("", ChimeUpdateUserSettings.name):
        return ChimeUpdateUserSettings()
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        known = sorted({ChimeUpdateUserSettings.name, *found})
        raise ConfigError(f"--operation: {name!r} is not registered; known: {', '.join(known)}")
    try:
        factory = found[name].load()
        operation: Operation = factory()
    except Exception as exc:
        raise ConfigError(
            f"--operation: {name!r} could not be loaded ({type(exc).__name__}: {exc})"
        ) from None
    # A plugin written before ``reader`` joined the protocol fails here, by name, rather than
    # with an AttributeError in the middle of a run.
    missing = [m for m in _PROTOCOL_MEMBERS if not hasattr(operation, m)]
    if missing:
        raise ConfigError(
            f"--operation: {name!r} does not implement the Operation protocol: it has no "
            f"{', '.join(missing)}"
            + (
                " (an operation that cannot read declares reader = None)"
                if "reader" in missing
                else ""
            )
        )
    return operation


_PROTOCOL_MEMBERS = (
    "name",
    "service",
    "columns",
    "id_column",
    "scope_column",
    "row_parser",
    "build",
    "reader",
    "error_parser",
)
