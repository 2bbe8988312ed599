"""Tooling around a run's output: summaries, the live progress display, timeline plots, merging
shard reports and writing an undo file."""
