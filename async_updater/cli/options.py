"""From parsed options to the objects a run is made of: the operation, the endpoint, the config."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..aws.endpoint import resolve_endpoint
from ..config import DEFAULT_ENDPOINT, LimitScope, UpdaterConfig
from ..errors import ConfigError
from ..operations.aws_model import ModelOperation
from ..operations.base import Operation
from ..operations.generic import GenericOperation, load_operation, parse_read_fields


def operation_from_args(args: argparse.Namespace) -> Operation:
    if args.aws_operation:
        return _model_operation(args)
    if args.params_template:
        raise ConfigError("--params-template: only used with --aws-operation")
    generic_only = (
        "method",
        "service",
        "body_template",
        "id_column",
        "read_path_template",
        "read_field",
    )
    if not args.path_template:
        used = [f"--{n.replace('_', '-')}" for n in generic_only if _given(args, n)]
        if used:
            raise ConfigError(
                f"{', '.join(used)}: only used with --path-template"
                + (" or --aws-operation" if used == ["--id-column"] else "")
            )
        return load_operation(args.operation)
    if args.operation:
        raise ConfigError("--operation and --path-template cannot be used together")
    if not args.service:
        raise ConfigError("--service: required with --path-template (e.g. execute-api)")
    body = _read_json(args.body_template, "--body-template") if args.body_template else None
    return GenericOperation(
        service=args.service,
        path_template=args.path_template,
        method=args.method,
        body_template=body,
        id_column=args.id_column,
        scope_column=args.scope_column or None,
        read_path_template=args.read_path_template,
        read_fields=parse_read_fields(args.read_field),
    )


def _model_operation(args: argparse.Namespace) -> ModelOperation:
    clash = [
        f"--{n.replace('_', '-')}"
        for n in (
            "operation",
            "path_template",
            "method",
            "service",
            "body_template",
            "read_path_template",
            "read_field",
        )
        if _given(args, n)
    ]
    if clash:
        raise ConfigError(f"--aws-operation and {', '.join(clash)} cannot be used together")
    if not args.params_template:
        raise ConfigError(
            "--params-template: required with --aws-operation "
            f"(async-updater operations {args.aws_operation} prints a skeleton)"
        )
    template = _read_json(args.params_template, "--params-template")
    return ModelOperation(
        args.aws_operation,
        template,
        id_column=args.id_column,
        scope_column=args.scope_column or None,
    )


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name)
    return bool(value) and not (name == "method" and value == "PUT")


def endpoint_from(args: argparse.Namespace, service: str) -> str:
    """``--endpoint-url``, else the AWS SDKs' environment variables, else Chime's endpoint."""
    if args.endpoint_url:
        return str(args.endpoint_url)
    env = os.environ
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    found = env.get(specific) or env.get("AWS_ENDPOINT_URL")
    if found:
        return found
    if service != "chime":
        raise ConfigError(
            f"--endpoint-url is needed for service {service!r} "
            f"(or set {specific} or AWS_ENDPOINT_URL)"
        )
    return DEFAULT_ENDPOINT


def config_from_args(args: argparse.Namespace, operation: Operation) -> UpdaterConfig:
    region = args.region or _profile_region(args.profile) or "us-east-1"
    if isinstance(operation, ModelOperation):
        # botocore's resolver: the endpoint options and variables as the SDKs read them, then
        # the service's rules; the endpoint may also say which name and region to sign for.
        resolved = resolve_endpoint(
            operation, region, endpoint_url=args.endpoint_url, profile=args.profile
        )
        endpoint, region, service = resolved.url, resolved.signing_region, resolved.signing_name
    else:
        endpoint, service = endpoint_from(args, operation.service), operation.service
    return UpdaterConfig(
        endpoint_url=endpoint,
        region=region,
        profile=args.profile,
        service=service,
        rate=args.rate,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        limit_scope=LimitScope(args.limit_scope),
        shared_limit=args.shared_limit,
        timeout=args.timeout,
        dry_run=args.dry_run,
        max_failures=args.max_failures,
        read_before=args.read_before,
        skip_unchanged=args.skip_unchanged,
    )


def _profile_region(profile: str | None) -> str | None:
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"]
    try:
        from botocore.session import Session

        region = Session(profile=profile).get_config_variable("region")
    except Exception:  # a broken config file is reported when credentials are resolved
        return None
    return region if isinstance(region, str) else None


def default_report_path(input_path: str, fmt: str) -> Path:
    p = Path(input_path)
    return p.with_name(f"{p.stem}.report.{fmt}")


def _read_json(path: str, option: str) -> Any:
    """A template file given to ``option``, parsed; one line naming the option if it cannot be."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"{option}: not valid JSON ({exc})") from None
