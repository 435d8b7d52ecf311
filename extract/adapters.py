"""Which module's output is the attention sub-layer's update of the residual stream, per family.

Holds:
- ``Adapter``: a family's blocks (a path from the base model) and the module in each block;
- ``ADAPTERS``: ``config.model_type`` -> ``Adapter``;
- ``adapter_for``: the adapter of a loaded model, or a clear error naming the families known;
- ``base_model``, ``attention_modules``: the base model (no LM head) and the hooked modules.

Usage::

    adapter = adapter_for(model)       # Adapter(family="GPT-2", blocks="h", module="attn")
    modules = attention_modules(model, layers=[0, 5])
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from attnmag.errors import AttnmagError


@dataclass(frozen=True)
class Adapter:
    """Where a family keeps its blocks, and which module's output each block adds to the
    residual stream."""

    family: str
    blocks: str
    module: str


_GPT2 = Adapter("GPT-2", "h", "attn")
_LLAMA = Adapter("Llama-style", "layers", "self_attn")
_GEMMA2 = Adapter("Gemma 2/3 (post-attention norm)", "layers", "post_attention_layernorm")

ADAPTERS: dict[str, Adapter] = {
    "gpt2": _GPT2,
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _GEMMA2,
    "gemma3": _GEMMA2,
    "gemma3_text": _GEMMA2,
    "gpt_neox": Adapter("GPT-NeoX / Pythia", "layers", "attention"),
    "opt": Adapter("OPT", "decoder.layers", "self_attn"),
}


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``'s architecture (``config.model_type``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        known = ", ".join(sorted(ADAPTERS))
        raise AttnmagError(
            f"attnmag does not know the model family {model_type!r}; known families: {known}"
        )
    return ADAPTERS[model_type]


def base_model(model: nn.Module) -> nn.Module:
    """The transformer without its LM head (``model.base_model``), or ``model`` itself."""
    return getattr(model, "base_model", model)


def blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks."""
    module = base_model(model)
    for name in adapter_for(model).blocks.split("."):
        module = getattr(module, name)
    return module


def attention_modules(model: nn.Module, layers: list[int]) -> dict[int, nn.Module]:
    """The module whose output is the attention update, for each requested layer index."""
    all_blocks = blocks(model)
    name = adapter_for(model).module
    bad = [i for i in layers if not 0 <= i < len(all_blocks)]
    if bad:
        raise AttnmagError(
            f"layers {bad} do not exist: the model has layers 0..{len(all_blocks) - 1}"
        )
    return {i: getattr(all_blocks[i], name) for i in layers}
