"""What format a model's weights came in, for the provenance: a GGUF's quantisation.

Holds:
- ``gguf_weights``: a GGUF file's format and quantisation type, read from its tensor types;
- ``mark_weights``: record those on a loaded model (in its config), so that the provenance
  of whatever it measures carries them;
- ``weights_provenance``: what ``mark_weights`` recorded on a model (empty where nothing was).

A GGUF is dequantised on load, so the model's own dtype (float32) says nothing of the
precision its weights were stored at; the quantisation type does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gguf import GGUFReader
from torch import nn

__all__ = ["gguf_weights", "mark_weights", "weights_provenance"]

#: The config attribute ``mark_weights`` sets.
CONFIG_KEY = "attnmag_weights"


def gguf_weights(path: Path) -> dict[str, str]:
    """A GGUF file's weights format and quantisation type.

    Parameters
    ----------
    path : Path
        A ``.gguf`` file.

    Returns
    -------
    dict
        ``weights_format`` ("GGUF, dequantised on load"), ``quantisation`` (the tensor
        type holding most parameters, for example ``Q4_1``) and ``quantisation_mix`` (every
        tensor type's share of the parameters, largest first).

    Examples
    --------
    >>> from attnmag.extract.sources import bundled_gguf
    >>> gguf_weights(bundled_gguf())["quantisation"]
    'Q4_1'
    """
    counts: Counter[str] = Counter()
    for tensor in GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] += int(tensor.n_elements)
    total = sum(counts.values())
    mix = ", ".join(f"{name} {_share(n / total)}" for name, n in counts.most_common())
    return {
        "weights_format": "GGUF, dequantised on load",
        "quantisation": counts.most_common(1)[0][0],
        "quantisation_mix": mix,
    }


def _share(fraction: float) -> str:
    """A share of the parameters as a percentage (``<0.1%`` for a sliver)."""
    return "<0.1%" if fraction < 0.001 else f"{100 * fraction:.1f}%"


def mark_weights(model: nn.Module, weights: dict[str, str]) -> None:
    """Record ``weights`` (see ``gguf_weights``) on ``model``'s config."""
    setattr(model.config, CONFIG_KEY, dict(weights))


def weights_provenance(model: nn.Module) -> dict[str, str]:
    """What ``mark_weights`` recorded on ``model``, or an empty dict.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> marked = SimpleNamespace(config=SimpleNamespace())
    >>> mark_weights(marked, {"quantisation": "Q4_1"})
    >>> weights_provenance(marked)
    {'quantisation': 'Q4_1'}
    >>> weights_provenance(model)
    {}
    """
    return dict(getattr(getattr(model, "config", None), CONFIG_KEY, None) or {})
