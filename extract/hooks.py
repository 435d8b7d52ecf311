"""Forward hooks that keep only the per-token L2 norm of each attention update.

Holds:
- ``NormRecorder``: a context manager that hooks the attention modules of a model,
  stores a float32 ``(batch, seq)`` norm tensor per layer, optionally stops the
  forward pass after the last hooked layer, and always removes its hooks;
- ``StopForward``: raised inside the last hook to end the forward pass early;
- ``eval_mode``: a context manager that puts a model in eval mode (no dropout) and gives
  the model and every submodule back its own ``training`` flag, however the block ends.

Usage::

    with NormRecorder(modules, stop_after=max(modules)) as recorder:
        recorder.run(lambda: base(input_ids=ids, attention_mask=mask))
    norms = recorder.norms        # {layer: tensor(batch, seq), float32, on the model's device}

    with eval_mode(model):
        model(input_ids)          # dropout off; the caller's flags come back afterwards
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


class StopForward(Exception):
    """Ends a forward pass once the last requested layer has been measured."""


class NormRecorder:
    """Hooks ``modules`` ({layer: module}) and records ``||output||_2`` per token in float32."""

    def __init__(self, modules: dict[int, nn.Module], *, stop_after: int | None = None) -> None:
        self.modules = modules
        self.stop_after = stop_after
        self.norms: dict[int, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._buffer: torch.Tensor | None = None

    def _hook(self, layer: int, slot: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            update = output[0] if isinstance(output, tuple) else output
            out = self._buffer[slot] if self._buffer is not None else None
            if out is not None and (out.device != update.device or out.shape != update.shape[:-1]):
                out = None  # a layer on another device (device_map), or an unexpected shape
            self.norms[layer] = torch.linalg.vector_norm(
                update, dim=-1, dtype=torch.float32, out=out
            )
            if layer == self.stop_after:
                raise StopForward

        return hook

    def __enter__(self) -> NormRecorder:
        try:
            for slot, (layer, module) in enumerate(self.modules.items()):
                self._handles.append(module.register_forward_hook(self._hook(layer, slot)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this recorder added."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def run(
        self,
        forward: Callable[[], object],
        *,
        shape: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
    ) -> dict[int, torch.Tensor]:
        """Call ``forward`` (a closure over the model call); return the norms it recorded.

        With ``shape`` (batch, tokens), the norms are written into one float32 buffer on
        ``device``, allocated before the forward pass: small tensors left among the
        activations would fragment the CPU heap (the resident set then grows well past
        a bare forward pass's)."""
        self.norms = {}
        if shape is not None:
            self._buffer = torch.empty(
                (len(self.modules), *shape), dtype=torch.float32, device=device
            )
        try:
            forward()
        except StopForward:
            pass
        finally:
            self._buffer = None
        missing = set(self.modules) - set(self.norms)
        if missing:
            raise RuntimeError(f"the forward pass never reached layers {sorted(missing)}")
        return self.norms


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore each module's ``training`` flag.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; its submodules may be in mixed modes.

    Returns
    -------
    Iterator[nn.Module]
        A context manager yielding ``model``, in eval mode inside the block. On exit,
        normal or by an exception, the model and every submodule have their own flags back.

    Examples
    --------
    >>> with eval_mode(model):  # doctest: +SKIP
    ...     base(input_ids=ids)
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in flags:
            module.training = training
