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

``MLP_MODULES`` names the module whose output each block adds as its MLP update, read the
same way: GPT-2 ``GPT2Block`` (``residual + self.mlp(self.ln_2(...))``), Llama-style and
Gemma 1 (``residual + self.mlp(...)``), Gemma 2/3 (``residual +
self.post_feedforward_layernorm(self.mlp(...))``), GPT-NeoX (``self.mlp(...)`` added in both
residual layouts), OPT (no MLP module: ``residual + fc2(activation(fc1(...)))``).
``site_vectors`` returns each layer's ``attn``, ``mlp`` and ``resid`` (the block's input
hidden state, seen by a forward pre-hook on the block) for one text run alone.

``PROJECTIONS`` names each family's attention output projection (its input is the heads'
outputs concatenated, head by head, in ``GPT2Attention``, ``LlamaAttention``,
``Gemma3Attention``, ``GPTNeoXAttention`` and ``OPTAttention``). ``head_vectors`` builds
each head's whole contribution vector ``z_h @ W_h`` in float64 (a (tokens, heads, hidden)
tensor: fine for one short text), with Gemma 2/3's post-attention RMS norm applied to each
share as ``Gemma3RMSNorm.forward`` applies it to the whole: ``(1 + weight) * a /
sqrt(mean(a^2) + eps)``, ``a`` the projection's output.

``Untouchable`` is a tokenizer that fails a test whose run tokenizes before checking its options.
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


MLP_MODULES: dict[str, str] = {
    "gpt2": "mlp",
    "llama": "mlp",
    "mistral": "mlp",
    "qwen2": "mlp",
    "gemma": "mlp",
    "gemma2": "post_feedforward_layernorm",
    "gemma3_text": "post_feedforward_layernorm",
    "gpt_neox": "mlp",
    "opt": "fc2",
}

PROJECTIONS: dict[str, tuple[str, str]] = {
    "gpt2": ("attn", "c_proj"),
    "llama": ("self_attn", "o_proj"),
    "mistral": ("self_attn", "o_proj"),
    "qwen2": ("self_attn", "o_proj"),
    "gemma": ("self_attn", "o_proj"),
    "gemma2": ("self_attn", "o_proj"),
    "gemma3_text": ("self_attn", "o_proj"),
    "gpt_neox": ("attention", "dense"),
    "opt": ("self_attn", "out_proj"),
}
POST_NORMS = {"gemma2", "gemma3_text"}


def model_blocks(model) -> torch.nn.ModuleList:
    """The model's blocks, by ``UPDATE_MODULES``' path."""
    blocks = model
    for attribute in UPDATE_MODULES[model.config.model_type][0].split("."):
        blocks = getattr(blocks, attribute)
    return blocks


def _run(model, tokenizer, text: str) -> None:
    with torch.no_grad():
        model(torch.tensor([tokenizer(text)["input_ids"]]))


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def site_vectors(model, tokenizer, text: str, n_layers: int = 3) -> dict[str, list[torch.Tensor]]:
    """``{"attn": [...], "mlp": [...], "resid": [...]}``: per layer, ``(tokens, hidden)``."""
    blocks = model_blocks(model)
    attn, mlp = UPDATE_MODULES[model.config.model_type][1], MLP_MODULES[model.config.model_type]
    seen: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for i, block in enumerate(blocks[:n_layers]):
        handles += [
            getattr(block, attn).register_forward_hook(
                lambda m, a, out, i=i: seen.__setitem__(("attn", i), _first(out))
            ),
            getattr(block, mlp).register_forward_hook(
                lambda m, a, out, i=i: seen.__setitem__(("mlp", i), _first(out))
            ),
            block.register_forward_pre_hook(
                lambda m, a, kw, i=i: seen.__setitem__(
                    ("resid", i), a[0] if a else kw["hidden_states"]
                ),
                with_kwargs=True,
            ),
        ]
    try:
        _run(model, tokenizer, text)
    finally:
        for handle in handles:
            handle.remove()
    tokens = len(tokenizer(text)["input_ids"])
    return {
        site: [seen[site, i].reshape(tokens, -1) for i in range(n_layers)]
        for site in ("attn", "mlp", "resid")
    }


def head_vectors(model, tokenizer, text: str, n_layers: int = 3) -> list[dict[str, torch.Tensor]]:
    """Per layer: ``heads`` (tokens, heads, hidden) float64 contributions, and ``bias``
    (tokens, hidden), the bias's share of the update (zeros where there is no bias)."""
    owner, name = PROJECTIONS[model.config.model_type]
    heads = model.config.num_attention_heads
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    projections = [getattr(getattr(b, owner), name) for b in model_blocks(model)[:n_layers]]
    handles = [
        p.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(i, (a[0][0], out[0])))
        for i, p in enumerate(projections)
    ]
    try:
        _run(model, tokenizer, text)
    finally:
        for handle in handles:
            handle.remove()
    found = []
    for i, projection in enumerate(projections):
        z, a = (t.double() for t in captured[i])
        linear = isinstance(projection, torch.nn.Linear)
        w = (projection.weight.T if linear else projection.weight).detach().double()
        z = z.reshape(z.shape[0], heads, -1)
        per_head = torch.einsum("thi,hio->tho", z, w.reshape(heads, z.shape[-1], -1))
        b = projection.bias
        bias = torch.zeros_like(a) if b is None else b.detach().double().expand_as(a)
        if model.config.model_type in POST_NORMS:
            norm = model_blocks(model)[i].post_attention_layernorm
            scale = (1 + norm.weight.detach().double()) / torch.sqrt(
                a.pow(2).mean(-1, keepdim=True) + norm.eps
            )
            per_head, bias = per_head * scale[:, None, :], bias * scale
        found.append({"heads": per_head, "bias": bias})
    return found


class Untouchable:
    """A tokenizer that fails the test if the run gets as far as tokenizing."""

    padding_side = "right"

    def __call__(self, *args, **kwargs):
        raise AssertionError("the texts were tokenized before the options were checked")
