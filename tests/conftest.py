"""Shared fixtures: offline hubs, the real GPT-2 tokenizer files, and tiny random models
(built by ``tiny.py``, which the root conftest's examples share)."""

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from tiny import gpt2_tokenizer_files, tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gpt2_tokenizer_files(tmp_path_factory.mktemp("gpt2-tokenizer"))


@pytest.fixture
def gpt2_tokenizer(gpt2_tokenizer_dir: Path):
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(gpt2_tokenizer_dir)


@pytest.fixture
def tiny_gpt2() -> torch.nn.Module:
    return tiny_model("gpt2")


@pytest.fixture
def tiny_llama() -> torch.nn.Module:
    return tiny_model("llama")


@pytest.fixture
def tiny_gemma3() -> torch.nn.Module:
    return tiny_model("gemma3")


@pytest.fixture
def tiny_neox() -> torch.nn.Module:
    return tiny_model("neox")


@pytest.fixture
def tiny_opt() -> torch.nn.Module:
    return tiny_model("opt")


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
    from transformers import GPT2Tokenizer

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tiny_model("gpt2").save_pretrained(folder)
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
