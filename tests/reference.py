"""An independent reading of the attention updates, for checking the extract stage.

``attention_updates`` hooks, with plain ``register_forward_hook``, the module DESIGN.md
names for the model's family, runs one unpadded text through the full model, and returns
each layer's update as the model computed it (``(tokens, hidden)``, in the model's dtype).
"""

import torch

from attnmag.extract.adapters import adapter_for, base_model


def attention_updates(model, tokenizer, text: str, n_layers: int = 3) -> list[torch.Tensor]:
    """Each of the first ``n_layers`` layers' attention update for ``text`` run alone."""
    adapter = adapter_for(model)
    blocks = base_model(model)
    for name in adapter.blocks.split("."):
        blocks = getattr(blocks, name)
    seen = {}
    handles = [
        getattr(blocks[i], adapter.module).register_forward_hook(
            lambda m, a, out, i=i: seen.__setitem__(i, out[0] if isinstance(out, tuple) else out)
        )
        for i in range(n_layers)
    ]
    try:
        with torch.no_grad():
            model(torch.tensor([tokenizer(text)["input_ids"]]))
    finally:
        for handle in handles:
            handle.remove()
    return [seen[i][0] for i in range(n_layers)]
