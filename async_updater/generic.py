"""A generic operation: any SigV4-signed REST call made once per CSV row.

    --method PATCH --service execute-api --path-template '/v1/users/{user_id}/flags'
    --body-template body.json      # {"enabled": "{enabled:bool}", "note": "set by {owner}"}

Path placeholders ``{column}`` are percent-encoded as exactly one segment each. In the body
template, a string that is exactly one placeholder becomes a typed JSON value (``:str`` by
default, or ``:bool``, ``:int``, ``:float``, ``:json``); placeholders inside longer strings are
text. Which column identifies a row in the report is ``id_column`` (default: the last path
placeholder) and which one scopes the rate limiter is ``scope_column`` (default ``account_id``
if the CSV has it).

Operations can also come from other packages: an entry point in the group
``async_updater.operations`` naming a class (or factory) that returns an ``Operation``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError, InputError, RowError
from .model import RowRecord
from .operation import (
    ChimeUpdateUserSettings,
    HttpRequest,
    Operation,
    RowParser,
    encode_segment,
    parse_bool,
    validate_id,
)

__all__ = ["ENTRY_POINT_GROUP", "GenericOperation", "load_operation"]

ENTRY_POINT_GROUP = "async_updater.operations"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)(?::([a-z]+))?\}")
_TYPES = ("str", "bool", "int", "float", "json")
_METHODS = ("PUT", "POST", "PATCH", "DELETE")

Template = Callable[[Mapping[str, Any]], Any]


def _convert(column: str, kind: str, text: str) -> Any:
    if kind == "str":
        return text.strip()
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


def _compile(node: Any, typed: dict[str, str]) -> Template:
    """Turn a JSON template into a function of the row's typed values."""
    if isinstance(node, dict):
        parts = [(k, _compile(v, typed)) for k, v in node.items()]
        return lambda row: {k: f(row) for k, f in parts}
    if isinstance(node, list):
        items = [_compile(v, typed) for v in node]
        return lambda row: [f(row) for f in items]
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node)
        if whole:
            column, kind = whole.group(1), whole.group(2) or "str"
            _note(typed, column, kind)
            return lambda row: row[column]
        found = list(_PLACEHOLDER.finditer(node))
        if not found:
            return lambda row: node
        for m in found:
            _note(typed, m.group(1), "str" if m.group(2) is None else m.group(2))
        return lambda row: _PLACEHOLDER.sub(lambda m: str(row[m.group(1)]), node)
    return lambda row: node


def _note(typed: dict[str, str], column: str, kind: str) -> None:
    if kind not in _TYPES:
        raise ConfigError(f"--body-template: {{{column}:{kind}}}: type must be one of {_TYPES}")
    known = typed.setdefault(column, kind)
    # A path column is a validated string ("id"): using it as text in the body is fine.
    if known != kind and not (known == "id" and kind == "str"):
        raise ConfigError(f"--body-template: column {column!r} is used with two types")


class GenericOperation:
    """One templated SigV4 request per row. See the module docstring for the template rules."""

    __slots__ = (
        "_body",
        "_path_columns",
        "_path_parts",
        "_typed",
        "columns",
        "content_type",
        "id_column",
        "method",
        "name",
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
    ) -> None:
        method = method.upper()
        if method not in _METHODS:
            raise ConfigError(f"--method: {method!r} is not one of {', '.join(_METHODS)}")
        if not service or not re.fullmatch(r"[a-z0-9-]+", service):
            raise ConfigError(f"--service: {service!r} is not a SigV4 signing name")
        if not path_template.startswith("/"):
            raise ConfigError("--path-template: must start with '/'")
        if "?" in path_template or "#" in path_template:
            # The signer's canonical request has no query string: refuse rather than sign wrong.
            raise ConfigError("--path-template: query strings and fragments are not supported")
        # The name goes into the report's meta file: a resume with other templates is refused.
        digest = hashlib.sha256(json.dumps(body_template, sort_keys=True).encode()).hexdigest()
        self.name = name or f"generic {method} {service} {path_template} body:{digest[:12]}"
        self.method = method
        self.service = service
        self.content_type = content_type
        # Literal parts and placeholder names alternate: "/v1/users/" {user_id} "/flags".
        pieces = _PLACEHOLDER.split(path_template)
        self._path_parts: list[str] = []
        self._path_columns: list[str] = []
        for i in range(0, len(pieces), 3):
            literal = pieces[i]
            if "{" in literal or "}" in literal:
                raise ConfigError(
                    f"--path-template: cannot read {literal!r} (placeholders look like {{column}})"
                )
            self._path_parts.append(literal)
            if i + 1 < len(pieces):
                if pieces[i + 2] is not None:
                    raise ConfigError("--path-template: path placeholders take no type")
                self._path_columns.append(pieces[i + 1])
        if not self._path_columns:
            raise ConfigError("--path-template: needs at least one {column} placeholder")
        self._typed: dict[str, str] = {c: "id" for c in self._path_columns}
        self._body: Template | None = None
        if body_template is not None:
            self._body = _compile(body_template, self._typed)
        self.id_column = id_column or self._path_columns[-1]
        self.scope_column = scope_column
        needed = dict.fromkeys([*self._typed, self.id_column])
        self.columns: tuple[str, ...] = tuple(needed)

    def row_parser(self, header: Sequence[str]) -> RowParser:
        names = [h.strip().lower() for h in header]
        index = {n: i for i, n in enumerate(names)}
        missing = [c for c in self.columns if c.lower() not in index]
        if missing:
            raise InputError(
                f"the header does not fit: missing {', '.join(missing)}. "
                f"The templates need: {','.join(self.columns)}"
            )
        fields = [(c, self._typed.get(c, "id"), index[c.lower()]) for c in self.columns]
        width = len(header)
        scope = index.get(self.scope_column.lower(), -1) if self.scope_column else -1
        id_index = index[self.id_column.lower()]

        def parse(cells: Sequence[str], line: int) -> RowRecord:
            if len(cells) != width:
                raise RowError("", f"has {len(cells)} fields; the header has {width}")
            values: dict[str, Any] = {}
            for column, kind, i in fields:
                text = cells[i]
                values[column] = (
                    validate_id(column, text) if kind == "id" else _convert(column, kind, text)
                )
            account = cells[scope].strip() if scope >= 0 else ""
            return RowRecord(account, str(cells[id_index]).strip(), values, line)

        return parse

    def build(self, record: RowRecord) -> HttpRequest:
        values = record.values
        parts = self._path_parts
        path = parts[0]
        for i, column in enumerate(self._path_columns):
            path += encode_segment(str(values[column])) + parts[i + 1]
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
    return operation
