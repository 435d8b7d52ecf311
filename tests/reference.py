"""An independent reading of the attention updates, for checking the extract stage.

``UPDATE_MODULES`` names, per ``config.model_type``, the path from the full causal-LM model
to its blocks and the module whose output each block adds to the residual stream, read from
the family's own modelling code in transformers (not from ``attnmag.extract.adapters``):

- GPT-2 (``modeling_gpt2.GPT2Block``): ``hidden_states = attn_output + residual`` where
  ``attn_output`` is ``self.attn(...)`` (after ``c_proj``);
- Llama, Mistral, Qwen2, Gemma 1 (``LlamaDecoderLayer``): ``residual + self.self_attn(...)``
  (after ``o_proj``);
- Gemma 2/3 (``Gemma3DecoderLayer``): ``residual + self.post_attention_layernorm(
  self.self_attn(...))``, so the update is the norm's output, not the attention's;
- GPT-NeoX (``GPTNeoXLayer``): ``self.attention(...)`` feeds the residual (parallel or not);
- OPT (``OPTDecoderLayer``): ``residual + self.self_attn(...)`` (dropout aside).

``attention_updates`` hooks those modules with plain ``register_forward_hook``, runs one
unpadded text through the full model, and returns each layer's update as the model
computed it (``(tokens, hidden)``, in the model's dtype).
"""

import torch

UPDATE_MODULES: dict[str, tuple[str, str]] = {
    "gpt2": ("transformer.h", "attn"),
    "llama": ("model.layers", "self_attn"),
    "mistral": ("model.layers", "self_attn"),
    "qwen2": ("model.layers", "self_attn"),
    "gemma": ("model.layers", "self_attn"),
    "gemma2": ("model.layers", "post_attention_layernorm"),
    "gemma3": ("model.language_model.layers", "post_attention_layernorm"),
    "gemma3_text": ("model.layers", "post_attention_layernorm"),
    "gpt_neox": ("gpt_neox.layers", "attention"),
    "opt": ("model.decoder.layers", "self_attn"),
}


def update_modules(model) -> list[torch.nn.Module]:
    """Every block's attention-update module, found by the names above."""
    path, name = UPDATE_MODULES[model.config.model_type]
    blocks = model
    for attribute in path.split("."):
        blocks = getattr(blocks, attribute)
    return [getattr(block, name) for block in blocks]


def attention_updates(model, tokenizer, text: str, n_layers: int = 3) -> list[torch.Tensor]:
    """Each of the first ``n_layers`` layers' attention update for ``text`` run alone."""
    seen = {}
    handles = [
        module.register_forward_hook(
            lambda m, a, out, i=i: seen.__setitem__(i, out[0] if isinstance(out, tuple) else out)
        )
        for i, module in enumerate(update_modules(model)[:n_layers])
    ]
    try:
        with torch.no_grad():
            model(torch.tensor([tokenizer(text)["input_ids"]]))
    finally:
        for handle in handles:
            handle.remove()
    return [seen[i][0] for i in range(n_layers)]
