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
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError
from .model import RowRecord
from .operation import (
    ChimeUpdateUserSettings,
    HttpRequest,
    Operation,
    RowParser,
    encode_segment,
)
from .template import PLACEHOLDER, Template, compile_json, typed_row_parser

__all__ = ["ENTRY_POINT_GROUP", "GenericOperation", "load_operation"]

ENTRY_POINT_GROUP = "async_updater.operations"
_METHODS = ("PUT", "POST", "PATCH", "DELETE")


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
        pieces = PLACEHOLDER.split(path_template)
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
            self._body = compile_json(body_template, self._typed, "--body-template")
        self.id_column = id_column or self._path_columns[-1]
        self.scope_column = scope_column
        needed = dict.fromkeys([*self._typed, self.id_column])
        self.columns: tuple[str, ...] = tuple(needed)

    def row_parser(self, header: Sequence[str]) -> RowParser:
        return typed_row_parser(
            header, self.columns, self._typed, self.id_column, self.scope_column
        )

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
