"""Stage 3: frame + tables -> seaborn figures, HTML and Markdown reports.

Holds:
- ``write_report``: frame (+ tables) -> ``index.html``, ``report.md``, figures and CSV tables;
  ``fit_tables``: the coefficient tables a report shows, given or fitted;
- the report's figures, each a Figure that shows itself in a notebook:
  ``plot_valid_tokens``, ``plot_layer_norms``, ``plot_position_norms``,
  ``plot_trend_coefficients`` (and ``plot_position_trend``, the fitted lines by position),
  ``plot_lag_effects``, and for grouped frames ``plot_models``
  (models on a relative depth axis), ``plot_sites`` (sites side by side) and ``plot_heads``
  (layer x head heatmaps);
- the panels they are made of, seaborn-style axes-level plots (``ax=`` in, the Axes out):
  ``plot_token_grid``, ``plot_sequence_lengths``, ``plot_norm_violins``,
  ``plot_layer_means``, ``plot_position_heatmap``, ``plot_layer_levels``,
  ``plot_position_means``,
  ``plot_site_ratios``, ``plot_head_means``, ``plot_head_coefficients``,
  ``plot_trend_fits``, ``plot_coefficients``;
- the aggregates they draw, as tidy frames for drawing your own: ``mean_ci``,
  ``layer_means``, ``position_means``, ``position_means_across_layers``,
  ``sequence_lengths``, ``site_ratios``, ``select_layers``; ``means_by_position`` and
  ``position_bin_width``, the position bins used past ``BIN_THRESHOLD`` positions;
- the section "What tracks the magnitude" (module ``attnmag.reports.tracks``), which
  ``write_report`` adds where the frame has token or sink columns;
- ``findings`` and ``Finding``: the numbers each section reports, its sentences and its
  headline for the key results;
- ``open_folder`` and ``Folder``: a shard folder as the report reads it (aggregates by DuckDB,
  rows only of a seeded sample of texts), accepted wherever a frame is.

Usage::

    from attnmag import reports
    paths = reports.write_report(frame, "out/")          # fits what it needs
    paths = reports.write_report("norms/", "out/")       # a shard folder, in bounded memory
    reports.layer_means(reports.open_folder("norms/"))   # any aggregate, from a folder
    reports.plot_layer_norms(frame, layers=range(0, 30, 3))   # a cell's value: drawn inline
    reports.plot_coefficients(trend, term="position", hue="method", ax=ax)
"""

from attnmag.reports.figures import (
    NotebookFigure,
    plot_heads,
    plot_lag_effects,
    plot_layer_norms,
    plot_models,
    plot_position_norms,
    plot_position_trend,
    plot_sites,
    plot_trend_coefficients,
    plot_valid_tokens,
)
from attnmag.reports.findings import Finding, findings
from attnmag.reports.folder import Folder, open_folder
from attnmag.reports.panels import (
    plot_coefficients,
    plot_head_coefficients,
    plot_head_means,
    plot_layer_levels,
    plot_layer_means,
    plot_norm_violins,
    plot_position_heatmap,
    plot_position_means,
    plot_sequence_lengths,
    plot_site_ratios,
    plot_token_grid,
    plot_trend_fits,
)
from attnmag.reports.summaries import (
    BIN_THRESHOLD,
    layer_means,
    mean_ci,
    means_by_position,
    position_bin_width,
    position_means,
    position_means_across_layers,
    select_layers,
    sequence_lengths,
    site_ratios,
)
from attnmag.reports.write import fit_tables, write_report

__all__ = [
    "BIN_THRESHOLD",
    "Finding",
    "Folder",
    "NotebookFigure",
    "findings",
    "fit_tables",
    "layer_means",
    "mean_ci",
    "means_by_position",
    "open_folder",
    "plot_coefficients",
    "plot_head_coefficients",
    "plot_head_means",
    "plot_heads",
    "plot_lag_effects",
    "plot_layer_levels",
    "plot_layer_means",
    "plot_layer_norms",
    "plot_models",
    "plot_norm_violins",
    "plot_position_heatmap",
    "plot_position_means",
    "plot_position_norms",
    "plot_position_trend",
    "plot_sequence_lengths",
    "plot_site_ratios",
    "plot_sites",
    "plot_token_grid",
    "plot_trend_coefficients",
    "plot_trend_fits",
    "plot_valid_tokens",
    "position_bin_width",
    "position_means",
    "position_means_across_layers",
    "select_layers",
    "sequence_lengths",
    "site_ratios",
    "write_report",
]
