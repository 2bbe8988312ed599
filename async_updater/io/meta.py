"""``<report>.meta.json``: a fingerprint of the input a report was made from and how the run split
its users, so a resume against a different file (or a different split) is refused instead of
silently skipping users."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "input_fingerprint",
    "meta_path",
    "recorded_split",
    "split_text",
    "write_meta",
]

from ..errors import ReportError


def input_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the input file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def meta_path(report: str | os.PathLike[str]) -> Path:
    p = Path(report)
    return p.with_name(p.name + ".meta.json")


def write_meta(report: str | os.PathLike[str], meta: dict[str, Any]) -> None:
    target = meta_path(report)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror}") from None


def recorded_split(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """How the run behind ``meta`` was split: ``("K/N", basis)``, or None for a whole run.

    ``shard_basis`` is ``user`` or ``account`` (``ShardBasis``). A meta file written before
    the basis was recorded has a shard but no basis: those runs always split by account.
    """
    shard = meta.get("shard")
    if not shard:
        return None
    return str(shard), str(meta.get("shard_basis") or "account")


def split_text(meta: Mapping[str, Any]) -> str:
    """The split of ``meta`` in words, for messages: ``--shard 0/4 split by user``."""
    split = recorded_split(meta)
    return f"--shard {split[0]} split by {split[1]}" if split else "no --shard"
