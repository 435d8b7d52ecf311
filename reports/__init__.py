"""Stage 3: frame + tables -> seaborn figures, HTML and Markdown reports.

Holds:
- ``write_report``: frame (+ tables) -> ``index.html``, ``report.md``, figures and CSV tables;
- ``findings`` and ``Finding``: the numbers each section reports, and its sentences;
- ``plot_valid_tokens``, ``plot_layer_norms``, ``plot_position_norms``,
  ``plot_position_trend``, ``plot_lag_effects``: the five figures (matplotlib Figures).

Usage::

    from attnmag import reports
    paths = reports.write_report(frame, "out/")   # fits what it needs
"""

from attnmag.reports.figures import (
    plot_lag_effects,
    plot_layer_norms,
    plot_position_norms,
    plot_position_trend,
    plot_valid_tokens,
)
from attnmag.reports.findings import Finding, findings
from attnmag.reports.write import write_report

__all__ = [
    "Finding",
    "findings",
    "plot_lag_effects",
    "plot_layer_norms",
    "plot_position_norms",
    "plot_position_trend",
    "plot_valid_tokens",
    "write_report",
]
