"""Hooks that keep only per-token L2 norms of what a model adds to its residual stream.

Holds:
- ``Probe``: one hooked module and how its call becomes rows of norms (a forward hook, or a
  forward pre-hook for the stream entering a block);
- ``update_norm``, ``input_norm``: a probe's measurement of a module's output (the update it
  adds) or of its first input (the residual stream), float32 on the device;
- ``NormRecorder``: a context manager that installs the probes, writes their norms into one
  float32 ``(rows, batch, tokens)`` buffer per forward pass, stops the pass after the last
  probe, and always removes its hooks;
- ``StopForward``: raised inside the last probe to end the forward pass early;
- ``eval_mode``: a context manager that puts a model in eval mode (no dropout) and gives
  the model and every submodule back its own ``training`` flag, however the block ends.

Usage::

    probes = [Probe(module, row=i, measure=update_norm) for i, module in enumerate(modules)]
    with NormRecorder(probes, stop=probes[-1]) as recorder:
        norms = recorder.run(lambda: base(input_ids=ids), shape=ids.shape, device="cpu")
    # norms: tensor(rows, batch, tokens), float32

    with eval_mode(model):
        model(input_ids)          # dropout off; the caller's flags come back afterwards
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["NormRecorder", "Probe", "StopForward", "eval_mode", "input_norm", "update_norm"]

Measure = Callable[[tuple, dict, object, torch.Tensor], None]


class StopForward(Exception):
    """Ends a forward pass once the last requested measurement has been taken.

    Examples
    --------
    >>> def stop(module, args, output):
    ...     raise StopForward
    >>> handle = model.transformer.h[0].register_forward_hook(stop)
    >>> try:
    ...     model.transformer(input_ids=torch.tensor([[464, 318]]))
    ... except StopForward:
    ...     print("stopped after block 0")
    stopped after block 0
    >>> handle.remove()
    """


def norm_into(vectors: torch.Tensor, out: torch.Tensor) -> None:
    """Write ``||vectors||_2`` over the last axis, in float32, into ``out`` (batch, tokens).

    Parameters
    ----------
    vectors : torch.Tensor
        ``(batch, tokens, hidden)``, or flattened to ``(batch * tokens, hidden)`` (OPT's
        MLP); it may live on another device than ``out`` (a model spread by ``device_map``).
    out : torch.Tensor
        A ``(batch, tokens)`` float32 view.

    Examples
    --------
    >>> out = torch.empty(1, 2)
    >>> norm_into(torch.tensor([[[3.0, 4.0], [0.0, 1.0]]]), out)
    >>> out.tolist()
    [[5.0, 1.0]]
    """
    target = out if vectors.shape[:-1] == out.shape else out.view(vectors.shape[:-1])
    if vectors.device == out.device:
        torch.linalg.vector_norm(vectors, dim=-1, dtype=torch.float32, out=target)
    else:
        target.copy_(torch.linalg.vector_norm(vectors, dim=-1, dtype=torch.float32))


def update_norm(args: tuple, kwargs: dict, output: object, out: torch.Tensor) -> None:
    """A module's output (a tensor, or a tuple whose first item is one): its norm per token.

    Parameters
    ----------
    args, kwargs : tuple, dict
        The module's call arguments (unused).
    output : torch.Tensor or tuple
        The module's output, ``(batch, tokens, hidden)``.
    out : torch.Tensor
        A ``(1, batch, tokens)`` float32 view the norms are written into.
    """
    norm_into(output[0] if isinstance(output, tuple) else output, out[0])


def input_norm(args: tuple, kwargs: dict, output: object, out: torch.Tensor) -> None:
    """A block's input hidden state (first positional argument or ``hidden_states``): its
    norm per token.

    Parameters
    ----------
    args, kwargs : tuple, dict
        The block's call arguments.
    output : object
        Unused (the hook runs before the block).
    out : torch.Tensor
        A ``(1, batch, tokens)`` float32 view the norms are written into.
    """
    norm_into(args[0] if args else kwargs["hidden_states"], out[0])


@dataclass(eq=False)
class Probe:
    """A hooked ``module`` filling rows ``row .. row + width - 1`` of the recorder's buffer.

    Attributes
    ----------
    module : torch.nn.Module
        The module hooked.
    row : int
        Its first row in the buffer.
    measure : callable
        ``measure(args, kwargs, output, out)`` writes into ``out``, a ``(width, batch,
        tokens)`` float32 view (as ``update_norm`` and ``input_norm`` do).
    width : int
        Rows filled.
    pre : bool
        Hook the module's input (before it runs), else its output.

    Examples
    --------
    >>> probe = Probe(model.transformer.h[1].attn, row=1, measure=update_norm)
    >>> probe.width, probe.pre
    (1, False)
    >>> resid = Probe(model.transformer.h[1], row=2, measure=input_norm, pre=True)  # its input
    """

    module: nn.Module
    row: int
    measure: Measure
    width: int = 1
    pre: bool = False


class NormRecorder:
    """Installs ``probes`` and records their norms; ``stop`` ends the pass once measured.

    Parameters
    ----------
    probes : list of Probe
        The hooks, filling rows ``0 .. rows - 1`` of the buffer.
    stop : Probe, optional
        A probe after which the forward pass ends (``StopForward``).

    Examples
    --------
    >>> blocks = model.transformer.h[:2]
    >>> probes = [Probe(block.attn, row=i, measure=update_norm) for i, block in enumerate(blocks)]
    >>> ids = torch.tensor([[464, 3807, 318, 922, 13]])
    >>> forward = lambda: model.transformer(input_ids=ids)  # noqa: E731
    >>> with torch.inference_mode(), NormRecorder(probes, stop=probes[-1]) as recorder:
    ...     norms = recorder.run(forward, shape=(1, 5), device="cpu")
    >>> norms.shape, norms.dtype
    (torch.Size([2, 1, 5]), torch.float32)
    """

    def __init__(self, probes: list[Probe], *, stop: Probe | None = None) -> None:
        self.probes = probes
        self.stop = stop
        self.rows = max(p.row + p.width for p in probes)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._buffer: torch.Tensor | None = None
        self._seen: set[int] = set()

    def _hook(self, index: int, probe: Probe) -> Callable:
        def record(args: tuple, kwargs: dict, output: object) -> None:
            probe.measure(args, kwargs, output, self._buffer[probe.row : probe.row + probe.width])
            self._seen.add(index)
            if probe is self.stop:
                raise StopForward

        if probe.pre:
            return lambda module, args, kwargs: record(args, kwargs, None)
        return lambda module, args, kwargs, output: record(args, kwargs, output)

    def __enter__(self) -> NormRecorder:
        try:
            for index, probe in enumerate(self.probes):
                register = (
                    probe.module.register_forward_pre_hook
                    if probe.pre
                    else probe.module.register_forward_hook
                )
                self._handles.append(register(self._hook(index, probe), with_kwargs=True))
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
        shape: tuple[int, int],
        device: torch.device | str,
    ) -> torch.Tensor:
        """Call ``forward`` (a closure over the model call); return the ``(rows, batch,
        tokens)`` float32 norms it recorded on ``device``.

        The buffer is allocated once before the forward pass: small tensors left among the
        activations would fragment the CPU heap (the resident set then grows well past a
        bare forward pass's)."""
        buffer = torch.empty((self.rows, *shape), dtype=torch.float32, device=device)
        self._buffer, self._seen = buffer, set()
        try:
            forward()
        except StopForward:
            pass
        finally:
            self._buffer = None
        missing = [i for i in range(len(self.probes)) if i not in self._seen]
        if missing:
            raise RuntimeError(f"the forward pass never reached {len(missing)} hooked modules")
        return buffer


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
    >>> _ = model.train()
    >>> with eval_mode(model):
    ...     model.training
    False
    >>> model.training
    True
    >>> _ = model.eval()
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        # A model already in eval mode throughout is left as is (each flag set goes through
        # ``nn.Module.__setattr__``).
        if any(training for _, training in flags):
            model.eval()
        yield model
    finally:
        for module, training in flags:
            if module.training != training:
                module.training = training
