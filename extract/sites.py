"""What an extraction measures: the sites of each layer, their heads, and their hooks.

The sites known, ``SITES`` (``attnmag.extract.frame``) in the frame's order: ``attn`` (the
attention sub-layer's update), ``mlp`` (the MLP sub-layer's update), ``resid`` (the residual
stream entering the block).

Holds:
- ``WHOLE``: the ``head`` of a row that is a whole sub-layer's (or the stream's), not a head's;
- ``check_sites``: a user's ``sites`` and ``heads`` checked, sites in ``SITES`` order;
- ``Plan``, ``plan``: the rows measured per token (site, layer, head), their probes, and the
  probe after which the forward pass can stop.

Usage::

    run_plan = plan(model, layers=[0, 1], sites=("attn", "resid"), heads=True)
    run_plan.rows     # [("attn", 0, -1), ("attn", 0, 0), ..., ("resid", 1, -1)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from attnmag.errors import AttnmagError
from attnmag.extract.adapters import output_projection, post_norm, site_modules
from attnmag.extract.frame import SITES
from attnmag.extract.heads import HeadNorms
from attnmag.extract.hooks import Probe, input_norm, update_norm

__all__ = ["Plan", "WHOLE", "check_sites", "n_heads", "plan", "plan_rows"]

WHOLE = -1
# Order of the hooks within one block's forward pass: the stream entering it, the heads
# (the output projection's call), the attention's update, the MLP's.
_EXECUTION = {"resid": 0, "heads": 1, "attn": 2, "mlp": 3}


def check_sites(sites: object, heads: object) -> tuple[str, ...]:
    """``sites`` in ``SITES`` order, once checked with ``heads``.

    Parameters
    ----------
    sites : sequence of str, or str
        Names from ``SITES``, or one comma-separated string.
    heads : bool
        Whether heads are measured (they need the ``attn`` site).

    Returns
    -------
    tuple of str
        The sites; anything else is an ``AttnmagError``.

    Examples
    --------
    >>> check_sites("resid,attn", heads=False)
    ('attn', 'resid')
    """
    if not isinstance(heads, bool):
        raise AttnmagError(f"heads must be True or False, not {heads!r}")
    if isinstance(sites, str):
        sites = [s.strip() for s in sites.split(",")]
    listed = list(sites) if isinstance(sites, Iterable) else None
    if listed is None or not all(isinstance(s, str) for s in listed):
        raise AttnmagError(f"sites must be a list of site names from {SITES}, not {sites!r}")
    unknown = [s for s in listed if s not in SITES]
    if unknown:
        raise AttnmagError(f"unknown sites {unknown}; the sites are {', '.join(SITES)}")
    if not listed:
        raise AttnmagError(f"sites is empty: name at least one of {', '.join(SITES)}")
    if heads and "attn" not in listed:
        raise AttnmagError("heads=True splits the attention update: add 'attn' to the sites")
    return tuple(s for s in SITES if s in listed)


def n_heads(model: nn.Module) -> int:
    """The model's query heads per layer (``num_attention_heads``).

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model.

    Returns
    -------
    int
        The heads.

    Examples
    --------
    >>> n_heads(model), n_heads(other_model)
    (4, 4)
    """
    return int(model.config.num_attention_heads)


def plan_rows(
    layers: list[int], sites: tuple[str, ...], heads: bool, count: int
) -> list[tuple[str, int, int]]:
    """``(site, layer, head)`` of each row measured per token, in the frame's order: site by
    site, layer by layer; with ``heads``, each layer's attention rows are the whole update
    (head ``WHOLE``) then heads ``0..count-1``.

    Parameters
    ----------
    layers : list of int
        The layers measured.
    sites : tuple of str
        The sites measured, in ``SITES`` order.
    heads : bool
        One row per head of the attention update, as well as the whole.
    count : int
        The heads per layer.

    Returns
    -------
    list of tuple
        ``(site, layer, head)`` per row.

    Examples
    --------
    >>> plan_rows([0, 1], ("attn", "resid"), heads=False, count=4)
    [('attn', 0, -1), ('attn', 1, -1), ('resid', 0, -1), ('resid', 1, -1)]
    """
    split = lambda site: heads and site == "attn"  # noqa: E731
    return [
        (site, layer, head)
        for site in sites
        for layer in layers
        for head in [WHOLE, *(range(count) if split(site) else ())]
    ]


@dataclass
class Plan:
    """What a forward pass measures, as ``plan`` returns it.

    Attributes
    ----------
    rows : list of tuple
        ``(site, layer, head)`` of each row measured per token (``plan_rows``).
    probes : list of Probe
        The hooks that fill those rows.
    stop : Probe
        The last probe to run in the forward pass.

    Examples
    --------
    >>> measured = plan(model, [0], ("attn",), heads=True)
    >>> measured.rows[:2], len(measured.probes)
    ([('attn', 0, -1), ('attn', 0, 0)], 2)
    """

    rows: list[tuple[str, int, int]]
    probes: list[Probe]
    stop: Probe


def plan(model: nn.Module, layers: list[int], sites: tuple[str, ...], heads: bool) -> Plan:
    """The rows, probes and stopping probe for ``layers`` x ``sites`` (x heads).

    The stopping probe is the last requested layer's last requested site in the forward
    pass: the stream entering a block comes before the heads (the output projection's
    call), which come before the attention's update, which comes before the MLP's.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model of a known family.
    layers : list of int
        The layers measured.
    sites : tuple of str
        The sites measured, checked by ``check_sites``.
    heads : bool
        One row per head of the attention update, as well as the whole.

    Returns
    -------
    Plan
        The rows, probes and stopping probe.

    Examples
    --------
    >>> measured = plan(model, [0, 1], ("attn", "mlp"), heads=False)
    >>> len(measured.probes)
    4
    """
    count = n_heads(model)
    rows = plan_rows(layers, sites, heads, count)
    modules = {site: site_modules(model, layers, site) for site in sites}
    probes: list[Probe] = []
    when: dict[int, tuple[int, int]] = {}
    for row, (site, layer, head) in enumerate(rows):
        if head == WHOLE:
            probe = Probe(
                modules[site][layer],
                row=row,
                measure=input_norm if site == "resid" else update_norm,
                pre=site == "resid",
            )
            stage = site
        elif head == 0:
            projection = output_projection(model, layer)
            measure = HeadNorms(projection, count, post_norm(model, layer))
            probe = Probe(projection, row=row, measure=measure, width=count)
            stage = "heads"
        else:
            continue
        when[id(probe)] = (layer, _EXECUTION[stage])
        probes.append(probe)
    stop = max(probes, key=lambda p: when[id(p)])
    return Plan(rows=rows, probes=probes, stop=stop)
