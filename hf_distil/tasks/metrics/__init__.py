"""Metric modules kept in the package: `evaluate.load(metric_path("glue_like"), task)` works offline,
where the Hub's own metric scripts cannot be fetched."""

from __future__ import annotations

from pathlib import Path


def metric_path(name: str) -> str:
    return str(Path(__file__).with_name(name))


__all__ = ["metric_path"]
