"""Draw a run's timeline (``--timeline`` JSON Lines) as a PNG. Needs matplotlib (``plot`` extra)."""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import ConfigError, InputError

__all__ = ["plot_timeline", "read_timeline"]


def read_timeline(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    points = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        points.append(json.loads(line))
                    except ValueError:
                        raise InputError(f"{path}: line {n} is not JSON") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None
    if not points:
        raise InputError(f"{path}: the timeline is empty")
    return points


def plot_timeline(
    points: list[dict[str, Any]], out: str | os.PathLike[str], *, title: str = "async-updater run"
) -> None:
    """Requests per second (sent, accepted, throttled, errors) and the allowed rate over time,
    with requests in flight on a second axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "plot: matplotlib is not installed (pip install 'async-updater[plot]')"
        ) from None
    t = [p["second"] for p in points]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    ax.plot(t, [p["allowed_rate"] for p in points], color="black", lw=1.8, label="allowed rate")
    ax.plot(t, [p["sent"] for p in points], color="tab:blue", lw=1.2, label="sent")
    ax.plot(
        t,
        [p["accepted"] for p in points],
        color="tab:green",
        lw=1.2,
        label="answered (not throttled)",
    )
    ax.bar(
        t,
        [p["throttled"] for p in points],
        color="tab:red",
        alpha=0.6,
        width=0.9,
        label="throttled (429)",
    )
    ax.bar(
        t,
        [p["errors"] for p in points],
        bottom=[p["throttled"] for p in points],
        color="tab:orange",
        alpha=0.6,
        width=0.9,
        label="errors (5xx, network)",
    )
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("requests per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(
        t, [p["in_flight"] for p in points], color="tab:purple", lw=0.8, ls=":", label="in flight"
    )
    ax2.set_ylabel("requests in flight")
    ax2.set_ylim(bottom=0)
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = ax2.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
