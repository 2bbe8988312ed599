"""``async-updater plot``: a ``--timeline`` file drawn as a PNG, checked as an image (its header,
its size, and where the throttled seconds' red bars are), and the timeline reader's errors."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import pytest

from async_updater.cli import main
from async_updater.errors import ConfigError, InputError
from async_updater.pipeline.stats import Timeline
from async_updater.reporting.plot import plot_timeline, read_timeline

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# figsize (10, 5) inches at 110 dots per inch.
WIDTH, HEIGHT = 1100, 550


def timeline_file(path: Path, seconds: int, throttled_at: set[int]) -> Path:
    """A timeline as ``run --timeline`` writes it: 100 sent per second, 20 of them throttled
    in the seconds ``throttled_at``, two errors in second 0."""
    timeline = Timeline(start=0.0)
    for second in range(seconds):
        point = timeline.at(second + 0.5)
        point.sent = 100
        point.throttled = 20 if second in throttled_at else 0
        point.accepted = point.sent - point.throttled
        point.errors = 2 if second == 0 else 0
        point.allowed_rate = 90.0
        point.in_flight = 8
    timeline.write(path)
    return path


def png_chunks(data: bytes) -> dict[bytes, bytes]:
    """The PNG's chunks by type (image data joined), each checked against its CRC."""
    assert data[:8] == PNG_SIGNATURE
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    assert kind == b"IEND"
    return chunks


def bar_columns(png: Path) -> set[int]:
    """The x of every pixel column of the file that holds a throttled bar: a run of the bars'
    colour (tab:red at alpha 0.6 on white) taller than the legend's swatch."""
    from matplotlib import image

    pixels = image.imread(png)  # rows of RGBA floats in 0..1
    red, green, blue = pixels[..., 0] * 255, pixels[..., 1] * 255, pixels[..., 2] * 255
    found = (abs(red - 230) < 8) & (abs(green - 125) < 8) & (abs(blue - 126) < 8)
    per_column = found.sum(axis=0)
    return {int(x) for x in (per_column > 20).nonzero()[0]}


def test_the_plot_is_a_valid_png_of_the_stated_size(tmp_path: Path) -> None:
    points = read_timeline(timeline_file(tmp_path / "t.jsonl", 10, {3}))
    out = tmp_path / "run.png"
    plot_timeline(points, out, title="a run")
    chunks = png_chunks(out.read_bytes())
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth) == (WIDTH, HEIGHT, 8)
    assert colour == 6  # RGBA
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + width * 4)  # a filter byte and RGBA pixels per row


def test_throttled_seconds_are_drawn_where_they_happened(tmp_path: Path) -> None:
    bars = {}
    for name, throttled in (("none", set()), ("early", {1, 2}), ("late", {7, 8})):
        timeline = timeline_file(tmp_path / f"{name}.jsonl", 10, throttled)
        plot_timeline(read_timeline(timeline), tmp_path / f"{name}.png")
        bars[name] = bar_columns(tmp_path / f"{name}.png")
    assert bars["none"] == set()
    assert bars["early"] and bars["late"]
    assert max(bars["early"]) < min(bars["late"])  # left of the late ones, with no overlap


def test_the_plot_command_writes_the_png_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = timeline_file(tmp_path / "t.jsonl", 5, {2})
    out = tmp_path / "out.png"
    assert main(["plot", str(timeline), "--out", str(out), "--title", "demo"]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    assert out.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the timeline is empty"),
        ('{"second": 0}\nnot json\n', "line 2 is not JSON"),
        (None, "cannot read it (No such file or directory)"),
    ],
    ids=["empty", "not-json", "missing"],
)
def test_a_timeline_that_cannot_be_read_is_an_input_error_naming_the_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_timeline(path)
    assert str(info.value) == f"{path}: {message}"


def test_without_matplotlib_the_plot_is_a_config_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = read_timeline(timeline_file(tmp_path / "t.jsonl", 3, set()))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'async-updater\[plot\]'"):
        plot_timeline(points, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
