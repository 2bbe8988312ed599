"""Any AWS operation by name, serialized by botocore from the service's own model.

    --aws-operation cognito-idp:AdminUpdateUserAttributes --params-template params.json
    # params.json: {"UserPoolId": "{pool}", "Username": "{username}",
    #               "UserAttributes": [{"Name": "email", "Value": "{email}"}]}

The params template uses the placeholders of ``template.py``. An untyped ``{column}`` takes the
type of the member it fills (``{n}`` in an integer member is read as an int); an explicit type
must fit the member. The template is checked against the operation's input shape when the
operation is built (unknown members, missing required members, literal values of the wrong
type: one-line ``ConfigError`` naming the member), and the whole parameters once more on the
first row (what ``{column:json}`` cells bring in). After that each row's cells are checked only
where the model constrains them (lengths, ranges, JSON cells): a bad cell makes its row
``invalid``, naming the column and the member.

botocore's serializer for the model's protocol (restJson1, awsJson1.0/1.1, query, ec2,
restXml, rpc-v2-cbor) turns the parameters into method, path, query, headers and body; the
project's signer signs them (``tests/test_aws_operation_signing.py`` proves it identical to
botocore's ``SigV4Auth``); errors are read by botocore's parser for the protocol. The model,
serializer, parser and endpoint are built once per run.

Not covered (refused with a one-line error, not sent wrong): operations that are not plain
SigV4 (no auth, bearer tokens, SigV4a, S3's signer), streaming or event-stream input, a host
prefix, required request checksums, request compression and required endpoint discovery.
botocore's per-service request customisations (its ``handlers.py``) are not applied.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ..aws.catalog import (
    _protocol_label,
    load_model,
    protocol_of,
    why_unsupported,
)
from ..errors import ConfigError, RowError
from ..model import RowRecord
from ..transport.base import json_error_details, short_text
from .base import HttpRequest, RowParser
from .template import (
    PLACEHOLDER,
    Template,
    note_column,
    text_template,
    typed_row_parser,
    whole_placeholder,
)

__all__ = [
    "ModelOperation",
]

OPTION = "--params-template"

# The explicit placeholder types that can fill a member of each botocore shape type; the first
# is what an untyped ``{column}`` becomes. JSON fits anything and is checked row by row.
_KINDS_FOR: dict[str, tuple[str, ...]] = {
    "string": ("str", "json"),
    "boolean": ("bool", "json"),
    "integer": ("int", "json"),
    "long": ("int", "json"),
    "float": ("float", "int", "json"),
    "double": ("float", "int", "json"),
    "timestamp": ("str", "int", "float", "json"),
    "blob": ("str", "json"),
}
# Validation problems that mean the template (not a row) is wrong.
_STRUCTURAL = frozenset({"missing required field", "unknown field"})


_VALIDATOR: list[Callable[[Any, Any, str], list[tuple[str, str]]]] = []


def _validation_errors(value: Any, shape: Any, name: str) -> list[tuple[str, str]]:
    """botocore's ``ParamValidator`` on ``value`` against ``shape``, as (reason, message)."""
    if not _VALIDATOR:
        _VALIDATOR.append(_named_validator())
    return _VALIDATOR[0](value, shape, name)


def _named_validator() -> Callable[[Any, Any, str], list[tuple[str, str]]]:
    """botocore's validator with the parameter's name given, so messages name the member path
    (its public ``validate`` names the root ''), and each problem's reason kept. The subclasses
    reach what botocore keeps protected for subclasses; botocore loads on first use."""
    from botocore.validate import ParamValidator, ValidationErrors

    class Errors(ValidationErrors):  # type: ignore[misc]
        def reasons(self) -> list[tuple[str, str]]:
            return [(e[0], self._format_error(e)) for e in self._errors]

    class NamedValidator(ParamValidator):  # type: ignore[misc]
        def check(self, value: Any, shape: Any, name: str) -> list[tuple[str, str]]:
            errors = Errors()
            self._validate(value, shape, errors, name)
            reasons: list[tuple[str, str]] = errors.reasons()
            return reasons

    return NamedValidator().check


class _CellError(RowError):
    """A cell the model refuses; ``structural`` if it is the template's shape that is wrong
    (an unknown or missing member inside a JSON cell), which the first row turns into a
    ``ConfigError``."""

    __slots__ = ("structural",)

    def __init__(self, field: str, reason: str, structural: bool) -> None:
        super().__init__(field, reason)
        self.structural = structural


class _Compiler:
    """Walks a params template and the input shape together (see the module docstring)."""

    def __init__(self, typed: dict[str, str]) -> None:
        self.typed = typed
        self.first_columns: list[str] = []  # placeholder columns in template order

    def node(self, node: Any, shape: Any, path: str) -> Template:
        if isinstance(node, str):
            whole = whole_placeholder(node)
            if whole is not None:
                return self.placeholder(whole[0], whole[1], shape, path)
        type_name = shape.type_name
        if getattr(shape, "is_document_type", False):
            return self.free(node, path)
        if type_name == "structure":
            return self.structure(node, shape, path)
        if type_name == "list":
            return self.sequence(node, shape, path)
        if type_name == "map":
            return self.mapping(node, shape, path)
        if isinstance(node, str):
            text = text_template(node, self.typed, OPTION)
            if text is not None:
                if type_name != "string":
                    raise ConfigError(
                        f"{OPTION}: {path} is a {type_name}: text with placeholders cannot fill "
                        "it; use one placeholder as the whole value"
                    )
                columns = self._note_first(node)
                return self.checked(text, ",".join(columns), shape, path)
        self.literal(node, shape, path)
        return lambda row: node

    def sequence(self, node: Any, shape: Any, path: str) -> Template:
        if not isinstance(node, list):
            raise ConfigError(f"{OPTION}: {path} must be a list (of {shape.member.name})")
        items = [self.node(v, shape.member, f"{path}[{i}]") for i, v in enumerate(node)]
        return lambda row: [f(row) for f in items]

    def mapping(self, node: Any, shape: Any, path: str) -> Template:
        if not isinstance(node, dict):
            raise ConfigError(f"{OPTION}: {path} must be an object (a map)")
        for key in node:
            self.literal(key, shape.key, f"{path} key {key!r}")
        values = [(k, self.node(v, shape.value, f"{path}.{k}")) for k, v in node.items()]
        return lambda row: {k: f(row) for k, f in values}

    def structure(
        self, node: Any, shape: Any, path: str, filled: frozenset[str] = frozenset()
    ) -> Template:
        """A structure; ``filled`` are required members supplied elsewhere if left out."""
        where = path or "the template"
        if not isinstance(node, dict):
            raise ConfigError(f"{OPTION}: {where} must be an object ({shape.name})")
        members = shape.members
        for key in node:
            if key not in members:
                close = difflib.get_close_matches(key, list(members), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError(
                    f"{OPTION}: {_join(path, key)} is not a member of {shape.name}{hint} "
                    f"(members: {', '.join(members)})"
                )
        missing = [m for m in shape.required_members if m not in node and m not in filled]
        if missing:
            raise ConfigError(
                f"{OPTION}: {where} misses required member"
                f"{'s' if len(missing) > 1 else ''} {', '.join(_join(path, m) for m in missing)} "
                f"of {shape.name}"
            )
        parts = [(k, self.node(v, members[k], _join(path, k))) for k, v in node.items()]
        return lambda row: {k: f(row) for k, f in parts}

    def placeholder(self, column: str, kind: str | None, shape: Any, path: str) -> Template:
        type_name = shape.type_name
        allowed = _KINDS_FOR.get(type_name, ("json",))
        if getattr(shape, "is_document_type", False):
            allowed = ("json", "str", "bool", "int", "float")
        chosen = kind or allowed[0]
        if chosen not in allowed:
            fits = " or ".join(f"{{{column}:{k}}}" for k in allowed)
            raise ConfigError(
                f"{OPTION}: {path}: {{{column}:{chosen}}} cannot fill a {type_name} member; "
                f"use {{{column}}} (read as {allowed[0]}) or {fits}"
            )
        note_column(self.typed, column, chosen, OPTION)
        if column not in self.first_columns:
            self.first_columns.append(column)
        return self.checked(
            lambda row: row[column], column, shape, path, json_cell=chosen == "json"
        )

    def checked(
        self, fill: Template, field: str, shape: Any, path: str, *, json_cell: bool = False
    ) -> Template:
        """``fill``, checked against ``shape`` row by row only where the model can refuse a
        value of the right type (a length or range minimum, a union) or for a JSON cell.
        ``field`` names the column(s) in the row's error."""
        if not json_cell and not _has_constraints(shape):
            return fill

        def check(row: Mapping[str, Any]) -> Any:
            value = fill(row)
            problems = _validation_errors(value, shape, path)
            if problems:
                reason, message = problems[0]
                raise _CellError(field, short_text(message), reason in _STRUCTURAL)
            return value

        return check

    def free(self, node: Any, path: str) -> Template:
        """A document (any JSON): placeholders are filled, nothing is checked."""
        if isinstance(node, dict):
            parts = [(k, self.free(v, _join(path, k))) for k, v in node.items()]
            return lambda row: {k: f(row) for k, f in parts}
        if isinstance(node, list):
            items = [self.free(v, f"{path}[{i}]") for i, v in enumerate(node)]
            return lambda row: [f(row) for f in items]
        if isinstance(node, str):
            whole = whole_placeholder(node)
            if whole is not None:
                column, kind = whole
                note_column(self.typed, column, kind or "str", OPTION)
                return lambda row: row[column]
            text = text_template(node, self.typed, OPTION)
            if text is not None:
                return text
        return lambda row: node

    def literal(self, value: Any, shape: Any, path: str) -> None:
        problems = _validation_errors(value, shape, path)
        if problems:
            raise ConfigError(f"{OPTION}: {short_text(problems[0][1])}")

    def _note_first(self, text: str) -> list[str]:
        columns = list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(text)))
        for column in columns:
            if column not in self.first_columns:
                self.first_columns.append(column)
        return columns


def _has_constraints(shape: Any) -> bool:
    """Whether botocore's validator can refuse a value of the right type for ``shape``: a
    minimum (a length minimum of 0 cannot fail; a number's can) or a union."""
    metadata = shape.metadata
    if "union" in metadata:
        return True
    if "min" not in metadata:
        return False
    return shape.type_name not in ("string", "blob", "list", "map") or metadata["min"] > 0


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class ModelOperation:
    """One botocore-modelled AWS operation per row. See the module docstring for the rules.

    ``service`` is the model's SigV4 signing name (the endpoint may name another: see
    ``resolve_endpoint``). ``error_parser`` reads error answers with botocore's parser for the
    protocol; pass it to the transport (``AiohttpTransport(..., error_parser=...)``).
    """

    __slots__ = (
        "_checked",
        "_input",
        "_model",
        "_params",
        "_parser",
        "_serializer",
        "_tokens",
        "_typed",
        "columns",
        "id_column",
        "name",
        "operation_name",
        "protocol",
        "scope_column",
        "service",
        "service_name",
    )

    def __init__(
        self,
        spec: str,
        params_template: Any,
        *,
        id_column: str | None = None,
        scope_column: str | None = "account_id",
        session: Any = None,
    ) -> None:
        from botocore.parsers import create_parser
        from botocore.serialize import create_serializer

        op = load_model(spec, session)
        reason = why_unsupported(op)
        if reason:
            raise ConfigError(
                f"--aws-operation: {op.service_model.service_name}:{op.name} {reason}, "
                "which is not supported"
            )
        self._model = op
        self._input = op.input_shape
        self.service_name: str = op.service_model.service_name
        self.operation_name: str = op.name
        self.service: str = op.service_model.signing_name
        protocol = protocol_of(op.service_model)
        self.protocol = _protocol_label(op.service_model)
        self._serializer = create_serializer(protocol, include_validation=False)
        self._parser = create_parser(protocol)
        self._typed: dict[str, str] = {}
        compiler = _Compiler(self._typed)
        if params_template is None:
            params_template = {}
        if self._input is None:
            if params_template != {}:
                raise ConfigError(f"{OPTION}: {op.name} takes no input; use {{}}")
            self._params: Template = lambda row: {}
        else:
            self._params = compiler.structure(
                params_template, self._input, "", frozenset(op.idempotent_members)
            )
        # botocore's client fills idempotency tokens the caller leaves out; so do we, but from
        # the row's parameters rather than at random, so a re-sent row repeats its token.
        self._tokens: tuple[str, ...] = tuple(
            m for m in op.idempotent_members if m not in (params_template or {})
        )
        columns = list(self._typed)
        if id_column is None:
            id_column = _default_id_column(params_template, compiler.first_columns)
        if id_column is None:
            raise ConfigError(
                "--id-column: needed: the params template has no {column} placeholder to name "
                "the rows in the report by"
            )
        self.id_column = id_column
        self.scope_column = scope_column
        self.columns: tuple[str, ...] = tuple(dict.fromkeys([*columns, id_column]))
        digest = hashlib.sha256(json.dumps(params_template, sort_keys=True).encode()).hexdigest()
        self.name = f"aws {self.service_name}:{self.operation_name} params:{digest[:12]}"
        self._checked = False

    @property
    def model(self) -> Any:
        """The botocore ``OperationModel``."""
        return self._model

    @property
    def reader(self) -> None:
        """None: a model operation has no read paired with it, so ``--read-before``,
        ``--skip-unchanged`` and ``undo`` are refused for it (``Operation.reader``)."""
        return None

    def row_parser(self, header: Sequence[str]) -> RowParser:
        return typed_row_parser(
            header, self.columns, self._typed, self.id_column, self.scope_column
        )

    def params(self, record: RowRecord) -> dict[str, Any]:
        """The operation's input parameters for ``record`` (``RowError`` for a bad cell;
        ``ConfigError`` if the first row shows the template does not fit the model)."""
        if self._checked:
            params: dict[str, Any] = self._params(record.values)
        else:
            try:
                params = self._params(record.values)
            except _CellError as exc:
                if exc.structural:
                    raise ConfigError(f"{OPTION}: on the first row: {exc}") from None
                raise
        if self._tokens:
            seed = json.dumps([self.name, params], sort_keys=True, default=str)
            token = str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
            for member in self._tokens:
                params[member] = token
        if not self._checked:
            self._check_first(params)
        return params

    def build(self, record: RowRecord) -> HttpRequest:
        request = self._serializer.serialize_to_request(self.params(record), self._model)
        return _http_request(request)

    def _check_first(self, params: dict[str, Any]) -> None:
        problems = _validation_errors(params, self._input, "") if self._input else []
        structural = [message for reason, message in problems if reason in _STRUCTURAL]
        if structural:
            raise ConfigError(f"{OPTION}: on the first row: {short_text(structural[0])}")
        self._checked = True
        if problems:
            raise RowError("", short_text(problems[0][1]))

    def error_parser(self, status: int, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        """(error code, message) of an error answer, read by botocore's parser for the
        protocol; the default JSON reading if botocore cannot make sense of it."""
        try:
            parsed = self._parser.parse(
                {"status_code": status, "headers": headers, "body": body},
                self._model.output_shape,
            )
        except Exception:  # a body botocore cannot read is still an answer to report
            return json_error_details(status, headers, body)
        error = parsed.get("Error") or {}
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or error.get("message") or "")
        if not code or code == str(status):
            fallback_code, fallback_message = json_error_details(status, headers, body)
            return fallback_code, short_text(message) or fallback_message
        return code, short_text(message) or f"HTTP {status} with no message"


def _default_id_column(template: Any, columns: list[str]) -> str | None:
    """The column that fills a top-level member named for a user (Username, UserName, UserId),
    else the first placeholder column."""
    if isinstance(template, dict):
        for key, value in template.items():
            if key.lower().endswith(("username", "userid")) and isinstance(value, str):
                whole = whole_placeholder(value)
                if whole is not None:
                    return whole[0]
    return columns[0] if columns else None


def _http_request(request: Mapping[str, Any]) -> HttpRequest:
    """A botocore request dict as the ``HttpRequest`` botocore would send (its
    ``prepare_request_dict`` and ``AWSRequest`` body preparation)."""
    from botocore.utils import percent_encode_sequence

    path = request["url_path"] or "/"
    path, _, query = path.partition("?")
    extra = request["query_string"]
    if extra:
        encoded = percent_encode_sequence(extra)
        query = f"{query}&{encoded}" if query else encoded
    body = request["body"]
    if isinstance(body, dict):
        body = urlencode(
            [(str(k).encode(), v.encode() if isinstance(v, str) else v) for k, v in body.items()],
            doseq=True,
        ).encode()
    elif isinstance(body, str):
        body = body.encode()
    elif body is None:
        body = b""
    content_type = ""
    headers: list[tuple[str, str]] = []
    for name, value in request["headers"].items():
        if name.lower() == "content-type":
            content_type = value
        else:
            headers.append((name, str(value)))
    return HttpRequest(request["method"], path, body, content_type, query, tuple(headers))


# -- discovery: ``async-updater operations [SERVICE[:Op]]`` ---------------------------------
