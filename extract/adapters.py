"""Which modules add each sub-layer's update to the residual stream, per model family.

Holds:
- ``Adapter``: a family's blocks (a path from the base model) and, in each block, the module
  whose output is the attention update, the MLP's update, the attention's output projection
  and the norm applied after that projection (Gemma 2/3), if any;
- ``ADAPTERS``: ``config.model_type`` -> ``Adapter``;
- ``adapter_for``: the adapter of a loaded model, or a clear error naming the families known;
- ``base_model``, ``blocks``: the base model (no LM head) and its list of blocks;
- ``attention_modules``, ``site_modules``: the hooked modules per layer;
- ``output_projection``, ``post_norm``: the attention's output projection of a layer and the
  norm applied to its output before the residual sum (None for most families).

Usage::

    adapter = adapter_for(model)       # Adapter(family="GPT-2", blocks="h", module="attn", ...)
    modules = attention_modules(model, layers=[0, 5])
    mlps = site_modules(model, [0, 5], "mlp")
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from attnmag.errors import AttnmagError

__all__ = [
    "ADAPTERS",
    "Adapter",
    "adapter_for",
    "attention_modules",
    "base_model",
    "blocks",
    "output_projection",
    "post_norm",
    "site_modules",
]


@dataclass(frozen=True)
class Adapter:
    """Where a family keeps its blocks, and which modules of a block produce its updates.

    ``module`` and ``mlp`` name the modules whose outputs each block adds to the residual
    stream (attention's and the MLP's); ``projection`` the attention's output projection
    (its input holds one slice per query head); ``post_norm`` the norm between that
    projection and the residual sum, where the family has one.

    Examples
    --------
    >>> ADAPTERS["gpt2"].family
    'GPT-2'
    """

    family: str
    blocks: str
    module: str
    mlp: str
    projection: str
    post_norm: str | None = None


_GPT2 = Adapter("GPT-2", "h", "attn", "mlp", "attn.c_proj")
_LLAMA = Adapter("Llama-style", "layers", "self_attn", "mlp", "self_attn.o_proj")
_GEMMA2 = Adapter(
    "Gemma 2/3 (post-attention norm)",
    "layers",
    "post_attention_layernorm",
    "post_feedforward_layernorm",
    "self_attn.o_proj",
    post_norm="post_attention_layernorm",
)

ADAPTERS: dict[str, Adapter] = {
    "gpt2": _GPT2,
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _GEMMA2,
    "gemma3": _GEMMA2,
    "gemma3_text": _GEMMA2,
    "gpt_neox": Adapter("GPT-NeoX / Pythia", "layers", "attention", "mlp", "attention.dense"),
    # OPT's MLP is no module of its own: fc2's output (flattened to (batch * tokens, hidden))
    # is what the block adds to the residual.
    "opt": Adapter("OPT", "decoder.layers", "self_attn", "fc2", "self_attn.out_proj"),
}


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``'s architecture (``config.model_type``).

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model.

    Returns
    -------
    Adapter
        Its family's adapter; an unknown family is an ``AttnmagError`` naming those known.

    Examples
    --------
    >>> adapter_for(model).blocks
    'h'
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise AttnmagError(
            f"attnmag does not know the model family {model_type!r}; known families: {known}"
        )
    return ADAPTERS[model_type]


def base_model(model: nn.Module) -> nn.Module:
    """The transformer without its LM head.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model, with or without its head.

    Returns
    -------
    torch.nn.Module
        ``model.base_model``, or ``model`` itself.

    Examples
    --------
    >>> type(base_model(model)).__name__
    'GPT2Model'
    """
    return getattr(model, "base_model", model)


def _submodule(module: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        module = getattr(module, name)
    return module


def blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model of a known family.

    Returns
    -------
    torch.nn.ModuleList
        Its blocks, first to last.

    Examples
    --------
    >>> len(blocks(model)), len(blocks(other_model))
    (12, 3)
    """
    return _submodule(base_model(model), adapter_for(model).blocks)


def _chosen_blocks(model: nn.Module, layers: list[int]) -> dict[int, nn.Module]:
    all_blocks = blocks(model)
    bad = [i for i in layers if not 0 <= i < len(all_blocks)]
    if bad:
        raise AttnmagError(
            f"layers {bad} do not exist: the model has layers 0..{len(all_blocks) - 1}"
        )
    return {i: all_blocks[i] for i in layers}


def attention_modules(model: nn.Module, layers: list[int]) -> dict[int, nn.Module]:
    """The module whose output is the attention update, for each requested layer index.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model of a known family.
    layers : list of int
        Block indices.

    Returns
    -------
    dict of int to torch.nn.Module
        Per layer, the module to hook.

    Examples
    --------
    >>> modules = attention_modules(model, [0, 2])
    >>> sorted(modules), type(modules[0]).__name__
    ([0, 2], 'GPT2Attention')
    """
    return site_modules(model, layers, "attn")


def site_modules(model: nn.Module, layers: list[int], site: str) -> dict[int, nn.Module]:
    """Per requested layer, the module a site is measured at: ``attn`` and ``mlp`` the
    module whose output is that sub-layer's update, ``resid`` the block itself (its input is
    the residual stream entering it).

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model of a known family.
    layers : list of int
        Block indices.
    site : str
        ``"attn"``, ``"mlp"`` or ``"resid"``.

    Returns
    -------
    dict of int to torch.nn.Module
        Per layer, the module to hook.

    Examples
    --------
    >>> type(site_modules(model, [0], "mlp")[0]).__name__
    'GPT2MLP'
    """
    adapter = adapter_for(model)
    chosen = _chosen_blocks(model, layers)
    if site == "resid":
        return chosen
    name = {"attn": adapter.module, "mlp": adapter.mlp}[site]
    return {i: _submodule(block, name) for i, block in chosen.items()}


def output_projection(model: nn.Module, layer: int) -> nn.Module:
    """The attention's output projection of ``layer`` (``c_proj``, ``o_proj``, ``dense``,
    ``out_proj``): its input is the heads' outputs concatenated, head by head.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model of a known family.
    layer : int
        A block index.

    Returns
    -------
    torch.nn.Module
        The projection.

    Examples
    --------
    >>> output_projection(model, 0) is model.transformer.h[0].attn.c_proj
    True
    """
    return _submodule(_chosen_blocks(model, [layer])[layer], adapter_for(model).projection)


def post_norm(model: nn.Module, layer: int) -> nn.Module | None:
    """The norm between ``layer``'s output projection and the residual sum (Gemma 2/3's
    ``post_attention_layernorm``), or None where the projection's output is the update.

    Parameters
    ----------
    model : torch.nn.Module
        A transformers model of a known family.
    layer : int
        A block index.

    Returns
    -------
    torch.nn.Module or None
        The norm, where the family has one.

    Examples
    --------
    >>> post_norm(model, 0) is None
    True
    """
    name = adapter_for(model).post_norm
    return None if name is None else _submodule(_chosen_blocks(model, [layer])[layer], name)
