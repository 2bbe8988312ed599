"""What botocore knows: its services, their operations, one operation's model, whether it can be
sent as a plain SigV4 request built once per row, and a description of its input with a params
template skeleton (``async-updater operations``)."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from ..errors import ConfigError
from ..transport.base import short_text

__all__ = [
    "botocore_session",
    "describe_operation",
    "list_operations",
    "list_services",
    "load_model",
    "protocol_of",
    "why_unsupported",
]

_PROTOCOL_NAMES = {
    "json": "awsJson",
    "rest-json": "restJson1",
    "rest-xml": "restXml",
    "query": "awsQuery",
    "ec2": "ec2Query",
    "smithy-rpc-v2-cbor": "rpcv2Cbor",
}


_SIGV4 = "aws.auth#sigv4"


def botocore_session(profile: str | None = None) -> Any:
    """A botocore session (for ``profile``), or ``ConfigError`` if the profile does not exist."""
    from botocore.exceptions import ProfileNotFound
    from botocore.session import Session

    try:
        session = Session(profile=profile)
        if profile is not None:
            session.get_scoped_config()  # raises now for a profile that does not exist
    except ProfileNotFound as exc:
        raise ConfigError(f"--profile: {exc}") from None
    return session


def list_services(session: Any = None) -> list[str]:
    """The services botocore ships models for, by the names ``--aws-operation`` takes."""
    return sorted((session or botocore_session()).get_available_services())


def _service_model(service: str, session: Any) -> Any:
    from botocore.exceptions import UnknownServiceError

    try:
        return session.get_service_model(service)
    except UnknownServiceError:
        close = difflib.get_close_matches(service, list_services(session), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"--aws-operation: botocore has no service {service!r}{hint} "
            "(async-updater operations lists them)"
        ) from None


def list_operations(service: str, session: Any = None) -> list[str]:
    """The operations of ``service``, as named in its model."""
    return sorted(_service_model(service, session or botocore_session()).operation_names)


def load_model(spec: str, session: Any = None) -> Any:
    """The botocore ``OperationModel`` for ``SERVICE:OperationName`` (the operation's name in
    any case), or ``ConfigError`` naming what is unknown and what is close."""
    service, sep, name = spec.partition(":")
    if not sep or not service or not name:
        raise ConfigError(
            f"--aws-operation: {spec!r} is not SERVICE:OperationName, "
            "e.g. cognito-idp:AdminUpdateUserAttributes"
        )
    model = _service_model(service.strip().lower(), session or botocore_session())
    names = {n.lower(): n for n in model.operation_names}
    found = names.get(name.strip().lower().replace("_", ""))
    if found is None:
        close = difflib.get_close_matches(name, model.operation_names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"--aws-operation: {service} has no operation {name!r}{hint} "
            f"(async-updater operations {service} lists them)"
        )
    return model.operation_model(found)


def protocol_of(service_model: Any) -> str:
    protocol = getattr(service_model, "resolved_protocol", None) or service_model.protocol
    return str(protocol)


def _protocol_label(service_model: Any) -> str:
    protocol = protocol_of(service_model)
    label = _PROTOCOL_NAMES.get(protocol, protocol)
    if protocol == "json":
        label += service_model.metadata.get("jsonVersion", "1.0")
    return label


def why_unsupported(op: Any) -> str | None:
    """Why this operation cannot be sent as a plain SigV4 request built once per row, or None."""
    model = op.service_model
    auth = op.auth or model.metadata.get("auth")
    if auth is not None:
        if _SIGV4 not in auth:
            return f"is not signed with SigV4 (auth: {', '.join(auth)})"
    elif (op.auth_type or "v4") != "v4" or model.signature_version != "v4":
        return f"is not signed with plain SigV4 ({op.auth_type or model.signature_version})"
    if model.signing_name in ("s3", "s3-outposts", "s3-object-lambda", "s3express"):
        return "uses S3's own signing rules"
    if op.auth_type == "v4-unsigned-body" or op.unsigned_payload:
        return "sends an unsigned payload"
    if op.has_streaming_input or op.has_event_stream_input:
        return "takes a streaming input"
    if op.endpoint and op.endpoint.get("hostPrefix"):
        return f"sends to a host prefix ({op.endpoint['hostPrefix']})"
    if op.http_checksum_required or (op.http_checksum or {}).get("requestChecksumRequired"):
        return "needs a request checksum"
    if op.request_compression:
        return "compresses its requests"
    if model.endpoint_discovery_required or (op.endpoint_discovery or {}).get("required"):
        return "needs endpoint discovery"
    return None


def describe_operation(spec: str, session: Any = None) -> str:
    """The input shape of ``SERVICE:Op`` (members, types, which are required) and a params
    template skeleton to start from."""
    op = load_model(spec, session)
    model = op.service_model
    http = op.http
    lines = [
        f"{model.service_name}:{op.name} ({_protocol_label(model)}, "
        f"{http.get('method', 'POST')} {http.get('requestUri', '/')}, "
        f"signs as {model.signing_name})"
    ]
    reason = why_unsupported(op)
    if reason:
        lines.append(f"not supported by async-updater: it {reason}")
    doc = _first_sentence(op.documentation)
    if doc:
        lines.append(doc)
    shape = op.input_shape
    if shape is None:
        lines += ["", "input: none", "", "params template:", "{}"]
        return "\n".join(lines)
    lines += ["", f"input {shape.name} (* required):"]
    _describe_members(shape, lines, "  ", set())
    skeleton = _skeleton(shape, set(), top=True)
    lines += [
        "",
        "params template skeleton (required members; {column} placeholders name CSV columns,",
        "typed by the member they fill; add optional members as needed):",
        json.dumps(skeleton, indent=2),
    ]
    return "\n".join(lines)


def _first_sentence(html: str | None) -> str:
    text = re.sub(r"<[^>]+>", "", html or "")
    text = " ".join(text.split())
    first = text.split(". ")[0]
    return short_text(first if first.endswith(".") else first + "." if first else "", 200)


def _type_label(shape: Any) -> str:
    name = shape.type_name
    if name == "list":
        return f"list of {_type_label(shape.member)}"
    if name == "map":
        return f"map of {_type_label(shape.key)} to {_type_label(shape.value)}"
    if name == "structure":
        return "document" if getattr(shape, "is_document_type", False) else shape.name
    enum = getattr(shape, "enum", None)
    if enum:
        shown = "|".join(enum[:6]) + ("|..." if len(enum) > 6 else "")
        return f"{name} ({shown})"
    return str(name)


def _describe_members(shape: Any, lines: list[str], indent: str, seen: set[str]) -> None:
    if len(indent) > 10 or shape.name in seen:
        return
    required = set(shape.required_members)
    width = max((len(m) for m in shape.members), default=0)
    for name, member in shape.members.items():
        mark = "*" if name in required else " "
        lines.append(f"{indent}{mark} {name.ljust(width)}  {_type_label(member)}")
        inner = member
        while inner.type_name in ("list", "map"):
            inner = inner.member if inner.type_name == "list" else inner.value
        if inner.type_name == "structure" and not getattr(inner, "is_document_type", False):
            _describe_members(inner, lines, indent + "    ", seen | {shape.name})


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _skeleton(shape: Any, seen: set[str], *, top: bool = False, name: str = "value") -> Any:
    kind = shape.type_name
    if kind == "structure":
        if getattr(shape, "is_document_type", False) or shape.name in seen or len(seen) > 4:
            return "{" + _snake(name) + ":json}"
        members = shape.members
        # At the top, required members only; inside, every member (a list item of Name/Value
        # needs both, though the model requires only the name).
        chosen = [m for m in members if m in shape.required_members] if top else list(members)
        return {m: _skeleton(members[m], seen | {shape.name}, name=m) for m in chosen}
    if kind == "list":
        return [_skeleton(shape.member, seen, name=name)]
    if kind == "map":
        return {"KEY": _skeleton(shape.value, seen, name=name)}
    return "{" + _snake(name) + "}"
