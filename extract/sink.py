"""The first token's share of each attention update (``sink=True``).

Holds ``SinkProbes``, what fills the columns ``SINK_COLUMNS`` (``attnmag.extract.frame``):
``sink_weight`` (the mean over heads of the attention weight from the token to its text's
first token) and ``sink_norm`` (the norm of the first token's part of the update,
``||sum_h alpha^h_{t,0} W_O^h v^h_0||``, without the projection's bias). ``SinkProbes`` are
the probes (``attnmag.extract.hooks.Probe``) that fill two rows per layer, and a context
manager that routes the model's attention through its family's own eager attention for the
run, so that the attention probabilities exist.

The attention weights ``alpha`` exist only in eager attention: for the run, the model's
``config._attn_implementation`` is set to a registered attention function that calls the
family's ``eager_attention_forward`` and records, at the layers measured, each head's
weight on the first real token and the value vector there; the implementation the caller
set comes back afterwards. Under a Gemma 2/3 post-attention norm the first token's part is
scaled as the whole update is (as ``attnmag.extract.heads`` scales each head's share). The
attention weights take ``(batch, heads, tokens, tokens)`` per layer, as eager attention
does: memory follows the token budget per batch times the tokens of the longest text.

Usage::

    sink = SinkProbes(model, layers=[0, 1], row=3)
    with sink:
        ...  # NormRecorder([*sink.probes, ...]) fills rows 3..6
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from attnmag.errors import AttnmagError
from attnmag.extract.adapters import adapter_for, base_model, output_projection, post_norm
from attnmag.extract.heads import projection_matrix
from attnmag.extract.hooks import Probe

__all__ = ["SinkProbes"]

#: The attention implementation name attnmag registers for ``sink=True`` runs.
IMPLEMENTATION = "attnmag_sink"
#: Attention module id -> the recorder of its layer, while a run is in progress.
_ACTIVE: dict[int, Callable] = {}


def _attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: object,
) -> tuple:
    """The family's own eager attention, recorded at the layers measured."""
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise AttnmagError(
            f"sink=True needs eager attention probabilities, which {type(module).__name__} "
            "does not expose"
        )
    output, weights = eager(module, query, key, value, attention_mask, **kwargs)
    record = _ACTIVE.get(id(module))
    if record is not None:
        record(weights, value)
    return output, weights


AttentionInterface.register(IMPLEMENTATION, _attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)


class _Layer:
    """One layer's sink rows: the weights from the attention call, the norm from the output
    projection's (scaled by a Gemma post-norm)."""

    def __init__(self, model: nn.Module, layer: int, state: dict) -> None:
        self.projection = output_projection(model, layer)
        norm = post_norm(model, layer)
        matrix = projection_matrix(self.projection).detach().float()
        if norm is not None:
            matrix = matrix * (1.0 + norm.weight.detach().float())
        self.matrix = matrix
        self.eps = None if norm is None else float(getattr(norm, "eps", 1e-6))
        self.heads = int(model.config.num_attention_heads)
        self.state = state
        self.out: torch.Tensor | None = None
        self.part: torch.Tensor | None = None

    def record(self, weights: torch.Tensor, value: torch.Tensor) -> None:
        """From ``(batch, heads, q, k)`` weights and ``(batch, kv_heads, k, head_dim)`` values:
        the mean weight on the first token, and that token's part of the heads' outputs."""
        first = self.state["first"].to(weights.device)
        batch, heads, width, _ = weights.shape
        index = first.view(batch, 1, 1, 1).expand(batch, heads, width, 1)
        alpha = weights.gather(-1, index)[..., 0].float()  # (batch, heads, q)
        self.out[0].copy_(alpha.mean(1))
        v0 = value[torch.arange(batch, device=value.device), :, first.to(value.device)].float()
        v0 = v0.repeat_interleave(heads // v0.shape[1], dim=1)  # (batch, heads, head_dim)
        self.part = (alpha[..., None] * v0[:, :, None, :]).transpose(1, 2).reshape(batch, width, -1)

    def finish(self, args: tuple, kwargs: dict, output: object, out: torch.Tensor) -> None:
        """At the output projection: the norm of the first token's part of the update."""
        vectors = self.part @ self.matrix.to(self.part.device)
        norms = torch.linalg.vector_norm(vectors, dim=-1)
        if self.eps is not None:
            a = (output[0] if isinstance(output, tuple) else output).float()
            norms *= torch.rsqrt(a.pow(2).mean(-1) + self.eps)
        out[1].copy_(norms)
        self.part = None


class SinkProbes:
    """The probes filling ``sink_weight`` and ``sink_norm`` rows, two per layer from ``row``.

    Entered as a context manager, it routes the model's attention through eager attention
    and records at ``layers``; on exit the model's attention implementation comes back.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM of a known family whose attention calls transformers' attention
        interface.
    layers : list of int
        The layers measured.
    row : int
        The first row filled: layer ``layers[i]``'s weight in ``row + 2 i``, its norm after.

    Examples
    --------
    >>> from attnmag.extract.hooks import NormRecorder
    >>> ids = torch.tensor([[464, 3807, 318]])
    >>> forward = lambda: model.transformer(input_ids=ids)  # noqa: E731
    >>> with SinkProbes(model, [0, 1], row=0) as sink, NormRecorder(sink.probes) as recorder:
    ...     rows = recorder.run(forward, shape=(1, 3), device="cpu")
    >>> rows.shape  # sink_weight and sink_norm of layers 0 and 1
    torch.Size([4, 1, 3])
    """

    def __init__(self, model: nn.Module, layers: list[int], row: int) -> None:
        adapter_for(model)
        self.model = model
        self.state: dict = {}
        self.layers = [_Layer(model, layer, self.state) for layer in layers]
        self.first_probe = Probe(
            base_model(model), row=row, measure=self._start, width=2 * len(layers), pre=True
        )
        self.probes = [self.first_probe] + [
            Probe(layer.projection, row=row + 2 * i, measure=layer.finish, width=2)
            for i, layer in enumerate(self.layers)
        ]
        self.attention = [_attention_module(model, layer.projection) for layer in self.layers]
        self.saved: object = None

    def _start(self, args: tuple, kwargs: dict, output: object, out: torch.Tensor) -> None:
        """Before the pass: each text's first real column, and each layer's rows."""
        mask = kwargs.get("attention_mask")
        ids = kwargs["input_ids"]
        self.state["first"] = (
            torch.zeros(ids.shape[0], dtype=torch.int64, device=ids.device)
            if mask is None
            else mask.int().argmax(-1)
        )
        for i, layer in enumerate(self.layers):
            layer.out = out[2 * i : 2 * i + 2]

    def __enter__(self) -> SinkProbes:
        config = self.model.config
        self.saved = config._attn_implementation
        config._attn_implementation = IMPLEMENTATION
        for module, layer in zip(self.attention, self.layers, strict=True):
            _ACTIVE[id(module)] = layer.record
        return self

    def __exit__(self, *exc: object) -> None:
        for module in self.attention:
            _ACTIVE.pop(id(module), None)
        self.model.config._attn_implementation = self.saved


def _attention_module(model: nn.Module, projection: nn.Module) -> nn.Module:
    """The module that owns ``projection`` (the attention module its call is made from)."""
    for module in model.modules():
        if any(child is projection for child in module.children()):
            return module
    raise AttnmagError("the attention's output projection has no parent module")
