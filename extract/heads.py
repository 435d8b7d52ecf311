"""Per-head norms of the attention update, without a (batch, tokens, heads, hidden) tensor.

The attention update is the output projection applied to the heads' outputs concatenated:
``W_O z = sum_h W_O^h z_h`` (+ the projection's bias). Head ``h``'s own contribution is
``W_O^h z_h``; its squared norm is ``z_h (W_O^h W_O^hT) z_hT``, a quadratic form in the
head's Gram matrix. The Gram matrices are computed once per layer, in float64, as their QR
factors ``R_h`` (``R_hT R_h = W_O^h W_O^hT``), so that the norm is taken of the short
vector ``z_h R_hT`` rather than as the square root of a rounded quadratic form.

Holds:
- ``projection_matrix``: an output projection's weight as ``(inputs, outputs)``;
- ``head_factors``: the per-head factors ``R_hT`` of a projection (optionally scaled by a
  gain on the outputs);
- ``HeadNorms``: the probe measurement (``attnmag.extract.hooks.Probe``) that reads ``z``
  from the projection's call and writes one row of norms per head.

The projection's bias is no head's contribution and is left out. Where the family
normalises the update after the projection (Gemma 2/3's ``post_attention_layernorm``, an
RMS norm: ``update = g * a / sqrt(mean(a^2) + eps)`` with ``a`` the projection's output and
``g = 1 + weight``), each head's share is scaled the same way as the whole: the gain ``g``
is folded into the factors and every head's norm at a token is multiplied by that token's
``1 / sqrt(mean(a^2) + eps)``. The shares ``g * W_O^h z_h / sqrt(mean(a^2) + eps)`` then add
up to the update (less the bias's share, where there is a bias).

Usage::

    measure = HeadNorms(model.transformer.h[0].attn.c_proj, n_heads=12)
    probe = Probe(model.transformer.h[0].attn.c_proj, row=1, width=12, measure=measure)
"""

from __future__ import annotations

import torch
from torch import nn

from attnmag.errors import AttnmagError

__all__ = ["HeadNorms", "head_factors", "projection_matrix"]


def projection_matrix(projection: nn.Module) -> torch.Tensor:
    """The projection's weight as ``(inputs, outputs)``: ``nn.Linear`` stores it transposed,
    GPT-2's ``Conv1D`` (which has ``nf``, its output size) as is.

    Parameters
    ----------
    projection : torch.nn.Module
        An attention output projection.

    Returns
    -------
    torch.Tensor
        Its weight, ``(inputs, outputs)``.

    Examples
    --------
    >>> projection_matrix(model.transformer.h[0].attn.c_proj).shape
    torch.Size([32, 32])
    """
    weight = projection.weight
    if isinstance(projection, nn.Linear):
        return weight.T
    if hasattr(projection, "nf") and weight.shape[-1] == projection.nf:
        return weight
    raise AttnmagError(
        f"attnmag cannot read the output projection {type(projection).__name__} "
        "(a Linear or GPT-2 Conv1D was expected) to split the attention update by head"
    )


def head_factors(
    projection: nn.Module, n_heads: int, gain: torch.Tensor | None = None
) -> torch.Tensor:
    """Per head, ``R_hT`` with ``R_hT R_h`` the Gram matrix ``W_O^h W_O^hT`` of the head's
    rows of the projection (times ``diag(gain)`` on the outputs, when given).

    Parameters
    ----------
    projection
        The attention's output projection (``c_proj``, ``o_proj``, ``dense``, ``out_proj``).
    n_heads
        Query heads; the projection's input splits into that many equal slices, in order.
    gain
        An elementwise scale of the projection's output (a post-projection norm's weight).

    Returns
    -------
    torch.Tensor
        ``(n_heads, head_dim, k)`` float32 on the projection's device, ``k = min(head_dim,
        hidden)``; ``||z_h @ factors[h]|| == ||W_O^h z_h||``.

    Examples
    --------
    >>> factors = head_factors(torch.nn.Linear(8, 6, bias=False), n_heads=2)
    >>> tuple(factors.shape)
    (2, 4, 4)
    """
    with torch.no_grad():
        matrix = projection_matrix(projection).detach().to(torch.float64)
        if gain is not None:
            matrix = matrix * gain.detach().to(matrix)
        inputs, outputs = matrix.shape
        if inputs % n_heads:
            raise AttnmagError(
                f"the output projection takes {inputs} inputs, not a multiple of the "
                f"{n_heads} attention heads"
            )
        per_head = matrix.reshape(n_heads, inputs // n_heads, outputs)
        r = torch.linalg.qr(per_head.transpose(1, 2), mode="r").R  # (heads, k, head_dim)
        return r.transpose(1, 2).to(torch.float32)


class HeadNorms:
    """Probe measurement on an output projection: writes ``(n_heads, batch, tokens)`` norms
    of each head's contribution (scaled like the whole update by a Gemma post-norm).

    Parameters
    ----------
    projection : torch.nn.Module
        The attention's output projection (its input: the heads' outputs concatenated).
    n_heads : int
        Query heads per layer.
    norm : torch.nn.Module, optional
        The norm between the projection and the residual sum, where the family has one.

    Examples
    --------
    >>> from attnmag.extract.hooks import NormRecorder, Probe
    >>> projection = model.transformer.h[0].attn.c_proj
    >>> probe = Probe(projection, row=0, measure=HeadNorms(projection, n_heads=4), width=4)
    >>> ids = torch.tensor([[464, 3807, 318]])
    >>> forward = lambda: model.transformer(input_ids=ids)  # noqa: E731
    >>> with torch.inference_mode(), NormRecorder([probe], stop=probe) as recorder:
    ...     norms = recorder.run(forward, shape=(1, 3), device="cpu")
    >>> norms.shape  # (heads, batch, tokens)
    torch.Size([4, 1, 3])
    """

    def __init__(self, projection: nn.Module, n_heads: int, norm: nn.Module | None = None):
        gain = None if norm is None else 1.0 + norm.weight.detach().float()
        self.factors_t = head_factors(projection, n_heads, gain).transpose(1, 2).contiguous()
        self.eps = None if norm is None else float(getattr(norm, "eps", 1e-6))
        self.n_heads = n_heads

    def __call__(self, args: tuple, kwargs: dict, output: object, out: torch.Tensor) -> None:
        z = args[0] if args else kwargs["input"]
        tokens = z.shape[:-1].numel()
        # Tokens on the last axis: one product per head, (k, head_dim) x (head_dim, tokens),
        # and the sum of squares over the k rows, a reduction with tokens contiguous (a
        # norm over a short last axis runs several times slower).
        heads = z.reshape(tokens, self.n_heads, -1).to(torch.float32).permute(1, 2, 0)
        parts = torch.bmm(self.factors_t.to(z.device), heads)  # (heads, k, tokens)
        # The norms are taken in place in the recorder's rows (in a buffer on z's device
        # where a model spread over devices keeps the rows on another).
        rows = out.view(self.n_heads, tokens)
        norms = rows if rows.device == z.device else torch.empty_like(rows, device=z.device)
        torch.sum(parts.square_(), dim=1, out=norms)
        norms.sqrt_()
        if self.eps is not None:
            a = (output[0] if isinstance(output, tuple) else output).to(torch.float32)
            norms.mul_(torch.rsqrt(a.pow(2).mean(-1).reshape(1, tokens) + self.eps))
        if norms is not rows:
            rows.copy_(norms)
