"""Combine the reports of N shards (``--shard K/N``) into one, checking they fit together."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import ReportError
from ..io.keyindex import KeyIndex
from ..io.meta import meta_path, recorded_split, split_text
from ..io.reader import detect_format, read_report
from ..model import REPORT_COLUMNS, Status

__all__ = ["merge_reports"]


def merge_reports(
    inputs: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str]
) -> tuple[int, list[str]]:
    """Write the rows of ``inputs`` to ``output`` (format of the first input) and return
    (rows written, warnings). Refuses reports of different input files, operations, formats,
    or a user present in two reports; warns about missing shards."""
    if not inputs:
        raise ReportError("merge-reports: no reports given")
    paths = [Path(p) for p in inputs]
    out = Path(output)
    _check_paths(paths, out)
    fmt = detect_format(paths[0])
    metas = [_meta(p) for p in paths]
    warnings = [
        f"{p} has no readable {meta_path(p).name}: cannot check it belongs with the others"
        for p, m in zip(paths, metas, strict=True)
        if not m
    ]
    _check_same(paths, metas, fmt)
    warnings += _missing_shards(metas)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            written = _write_rows(paths, fmt, f)
        os.replace(tmp, out)
    except OSError as exc:
        raise ReportError(f"merge-reports: cannot write {out}: {exc.strerror}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return written, warnings


def _check_paths(paths: list[Path], out: Path) -> None:
    resolved = [p.resolve() for p in paths]
    if out.resolve() in resolved:
        raise ReportError("merge-reports: the output must not be one of the inputs")
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise ReportError(f"merge-reports: {paths[i]} is given twice")
    if meta_path(out).exists():
        # The output is some run's report: most likely the arguments are in the wrong order.
        raise ReportError(
            f"merge-reports: {out} is the report of a run ({meta_path(out).name} is next to "
            "it); the first argument is the merged report to write: name a new file"
        )


def _missing_shards(metas: list[dict[str, object]]) -> list[str]:
    splits = {split for m in metas if m and (split := recorded_split(m))}
    counts = {_shard_count(shard) for shard, _ in splits}
    if len(counts) != 1:
        return []
    n = counts.pop()
    have = {int(shard.split("/")[0]) for shard, _ in splits}
    missing = sorted(set(range(n)) - have)
    if not missing:
        return []
    return [
        f"shards {', '.join(f'{k}/{n}' for k in missing)} are missing: "
        "the merged report does not cover the whole input"
    ]


def _write_rows(paths: list[Path], fmt: str, f: IO[str]) -> int:
    """Copy every row of ``paths`` to ``f``; refuse a user found in two reports."""
    seen = KeyIndex()
    written = 0
    if fmt == "csv":
        f.write(",".join(REPORT_COLUMNS) + "\n")
    for i, path in enumerate(paths):
        for row in read_report(path):
            # Invalid rows may repeat a key (duplicates) and stay in their shard.
            if row.status != Status.INVALID.value:
                earlier = seen.add(row.account_id, row.user_id, i)
                if earlier is not None and earlier != i:
                    raise ReportError(
                        f"merge-reports: user {row.account_id}/{row.user_id} is in "
                        f"both {paths[earlier]} and {path}: these are not shards of "
                        "one run"
                    )
            f.write(row.text)
            written += 1
    return written


def _meta(path: Path) -> dict[str, object]:
    if not path.exists():
        raise ReportError(f"merge-reports: {path}: no such file")
    try:
        data = json.loads(meta_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_same(paths: list[Path], metas: list[dict[str, object]], fmt: str) -> None:
    for path in paths[1:]:
        if detect_format(path) != fmt:
            raise ReportError(f"merge-reports: {path} is not in the same format as {paths[0]}")
    for key, what in (("input_sha256", "input file"), ("operation", "operation")):
        values = {str(m.get(key)) for m in metas if m}
        if len(values) > 1:
            raise ReportError(f"merge-reports: the reports were made from different {what}s")
    known = [(path, m) for path, m in zip(paths, metas, strict=True) if m]
    # One split means one shard count and one basis: shards of 0/2 by user and 1/2 by account
    # would each miss some users and hold others twice.
    kinds = {_kind(recorded_split(m)) for _, m in known}
    if len(kinds) > 1:
        made = ", ".join(f"{path} ({split_text(m)})" for path, m in known)
        raise ReportError(
            f"merge-reports: the reports were not made with one --shard K/N split: {made}"
        )
    shards = [split[0] for _, m in known if (split := recorded_split(m))]
    for i, shard in enumerate(shards):
        if shard in shards[:i]:
            raise ReportError(f"merge-reports: shard {shard} is given twice")


def _shard_count(shard: str) -> int:
    return int(shard.split("/")[1])


def _kind(split: tuple[str, str] | None) -> tuple[int, str]:
    return (_shard_count(split[0]), split[1]) if split else (0, "")
