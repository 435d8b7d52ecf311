"""Runs the code blocks of README.md and docs/*.md as tests (sybil), and sets up the
docstring examples of the package (pytest's ``--doctest-modules``).

Every ``python`` block runs, and every ``sh``/``bash`` block runs in bash, unless a
``<!-- skip: next "why" -->`` comment before it says why it cannot run here (a long run, the
network, a GPU). Each page runs in a fresh temporary folder, so the examples' ``out/`` and
``norms/`` land there. A page's first blocks may stand for a long run: the namespace
already holds ``model`` and ``tokenizer`` (a tiny random 12-layer GPT-2 with GPT-2's real
tokenizer), ``other_model`` and ``other_tokenizer`` (a tiny random Llama), ``texts`` (16
bundled snippets with their label), and ``frame``, ``trend`` and ``lags`` measured and
fitted from them, which the later blocks use.

The docstring examples run in a fresh temporary folder each, with the stages, ``model``,
``tokenizer``, ``other_model``, ``other_tokenizer``, ``texts`` and ``frame`` as above, and
``np``, ``pd``, ``torch``, ``Path``, ``fits`` (``models.fit`` of ``log_norm ~ position`` on
``frame``), ``tables`` (``reports.fit_tables`` of ``frame``: the tidy tables and
glance rows of ``fit_all``'s ``ols`` methods) and ``shards``
(a shard folder of 8 snippets, layers 0-2, on the tiny GPT-2), and frames of 8 snippets
``heads`` (``heads=True``, layers 0-3), ``sites`` (attn, mlp, resid) and ``both`` (the tiny
GPT-2 and Llama combined), and ``plt`` (pyplot, its figures closed after each example).
The package folders are collected under the names they import as (``extract/norms.py`` is
``attnmag.extract.norms``), so each module is imported once.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from sybil import Sybil  # noqa: E402
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser  # noqa: E402

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny import gpt2_tokenizer_files, tiny_model  # noqa: E402

#: The package's folders, by the name each imports as.
PACKAGES = {
    "attnmag": "attnmag",
    "extract": "attnmag.extract",
    "models": "attnmag.models",
    "reports": "attnmag.reports",
}
collect_ignore = ["docs/conf.py"]


@cache
def _tiny_gpt2() -> tuple:
    """A tiny random GPT-2 (12 layers, 4 heads) and GPT-2's tokenizer."""
    from transformers import GPT2Tokenizer

    folder = gpt2_tokenizer_files(Path(tempfile.mkdtemp(prefix="attnmag-docs-tokenizer-")))
    return tiny_model("gpt2", n_layer=12), GPT2Tokenizer.from_pretrained(folder)


@cache
def _tiny_llama() -> tuple:
    """A tiny random Llama (3 layers, grouped-query attention) with GPT-2's tokenizer."""
    return tiny_model("llama"), _tiny_gpt2()[1]


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


@cache
def _fitted() -> tuple:
    """A formula's fits and ``fit_all``'s ``ols`` tables of the tiny GPT-2's frame, and a
    shard folder of 8 snippets."""
    from attnmag import extract, models
    from attnmag.reports import fit_tables

    model, tokenizer = _tiny_gpt2()
    texts, frame, _, _ = _measured()
    fits = models.fit(frame, "log_norm ~ position", n_jobs=1)
    tables = fit_tables(frame, trend_methods=["ols"], lag_methods=["ols"], n_jobs=1)
    shards = Path(tempfile.mkdtemp(prefix="attnmag-doctest-shards-")) / "norms"
    extract.write_shards(
        model,
        tokenizer,
        texts.select(range(8)),
        shards,
        layers=[0, 1, 2],
        shard_texts=4,
        progress=False,
    )
    return fits, tables, shards


@cache
def _grouped() -> dict:
    """Grouped frames of 8 snippets: by head (layers 0-3), by site, and of two models."""
    from attnmag import extract

    (model, tokenizer), (llama, _) = _tiny_gpt2(), _tiny_llama()
    texts = _measured()[0].select(range(8))
    frame = extract.attention_norms(model, tokenizer, texts, progress=False)
    return {
        "heads": extract.attention_norms(
            model, tokenizer, texts, layers=range(4), heads=True, progress=False
        ),
        "sites": extract.update_norms(
            model, tokenizer, texts, sites=("attn", "mlp", "resid"), progress=False
        ),
        "both": extract.combine(
            {
                "gpt2-tiny": frame,
                "llama-tiny": extract.attention_norms(llama, tokenizer, texts, progress=False),
            }
        ),
    }


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
    """Runs a shell block in bash with the venv's ``attnmag`` and ``python`` first on the PATH
    and the repository on ``PYTHONPATH`` (``python -m benchmarks.…`` runs from the page's
    temporary folder as from the repository root)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.parsed],
        env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest) -> Iterator[None]:
    """A docstring example runs in a fresh temporary folder with the names listed above."""
    if Path(request.node.path).relative_to(ROOT).parts[0] not in PACKAGES:
        yield
        return
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import torch

    from attnmag import extract, models, reports

    model, tokenizer = _tiny_gpt2()
    other_model, other_tokenizer = _tiny_llama()
    texts, frame, _, _ = _measured()
    fits, tables, shards = _fitted()
    request.getfixturevalue("doctest_namespace").update(
        {name: grouped.copy() for name, grouped in _grouped().items()},
        np=np,
        pd=pd,
        plt=plt,
        torch=torch,
        Path=Path,
        extract=extract,
        models=models,
        reports=reports,
        model=model,
        tokenizer=tokenizer,
        other_model=other_model,
        other_tokenizer=other_tokenizer,
        texts=texts,
        frame=frame.copy(),
        fits=fits,
        tables=tables,
        shards=shards,
    )
    request.getfixturevalue("monkeypatch").chdir(request.getfixturevalue("tmp_path"))
    yield
    plt.close("all")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """A package module's doctests import it by its package name (see the module docstring)."""
    parts = file_path.relative_to(ROOT).parts
    if file_path.suffix == ".py" and file_path.name != "__main__.py" and parts[0] in PACKAGES:
        name = ".".join([PACKAGES[parts[0]], *parts[1:]]).removesuffix(".py")
        module = importlib.import_module(name.removesuffix(".__init__"))
        sys.modules.setdefault(".".join(parts).removesuffix(".py"), module)
    return sybil_collect_file(file_path, parent)


sybil_collect_file = Sybil(
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
