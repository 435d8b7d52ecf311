"""GPU figures: tokens/s of a bare forward pass and of attnmag, float32 and bf16, on the
bundled SmolLM2 and on a model of GPT-2 large's shape (random weights), with ``heads=True``
and every site; the out-of-memory retry under a deliberately large token budget; peak GPU
memory. ``benchmarks/gpu.sh`` runs it under a time limit.

Methods, each from the texts to per-token norms over the same length-sorted batches:

- ``bare``: the base model's forward pass, every block, no hooks;
- ``attnmag``: ``extract.attention_norms`` (the tidy frame included);
- ``heads``: ``extract.attention_norms(heads=True)``;
- ``sites``: ``extract.update_norms`` at ``attn``, ``mlp`` and ``resid``;
- ``sites+heads``: the same with ``heads=True``.

The out-of-memory check caps this process's share of GPU memory (``torch.cuda.
set_per_process_memory_fraction``) a little above the model's weights, asks for every text
in one batch (a token budget of 10^9), and prints the batch sizes tried as the batch is
halved, and the largest relative difference in norms from a run with the default budget
(batches of other compositions: rounding only).

With ``--assets DIR`` (a folder written by ``benchmarks.gpu_assets``, for a GPU machine without
network or the bundled model and corpus) the tokenizers and texts come from ``DIR``, and
SmolLM2 is built from its config with seeded random weights: its shape, not its weights, sets
the speed, so its rows measure the same work; the output says so.

The out-of-memory check runs first; the timings then run in order (SmolLM2 on ``--texts``
texts, the GPT-2-large-shaped model on ``--large-texts``), each printed as soon as it is
done, and those not started within ``--budget`` seconds are skipped, so that the table is
printed before ``benchmarks/gpu.sh``'s time limit.

Without a CUDA device it stops at once with one line, unless ``--cpu-smoke``: then it runs
the same code on the CPU with four texts and a GPT-2-large-shaped model cut to two narrow
layers (20 heads kept), and simulates the out-of-memory error (a hook raises it for any batch
of more than two texts), to check the script before a GPU machine runs it.

Usage::

    python -m benchmarks.gpu                      # on a GPU machine; about 2 to 4 minutes
    python -m benchmarks.gpu --texts 256 --models gpt2-large-shape
    python -m benchmarks.gpu --cpu-smoke          # anywhere: the script's CPU-safe parts
    python -m benchmarks.gpu --assets .gpu        # tokenizers, texts, SmolLM2's shape from .gpu
    benchmarks/gpu.sh --results docs/results/gpu.md   # for the docs: table, device, retry

``--results FILE`` also writes the table to a Markdown file, with the device line and the
out-of-memory retry's line after it, for the documentation's benchmark page.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import gpt2_tokenizer, table, write_results

MB = 2**20
MODELS = ("smollm2", "gpt2-large-shape")
DTYPES = ("float32", "bfloat16")
METHODS = ("bare", "attnmag", "heads", "sites", "sites+heads")
# GPT-2 large: 36 blocks of width 1280, 20 heads, 1,024 positions.
GPT2_LARGE = {"n_layer": 36, "n_embd": 1280, "n_head": 20, "n_positions": 1024}
GPT2_LARGE_SMOKE = {"n_layer": 2, "n_embd": 80, "n_head": 20, "n_positions": 1024}
GPT2_RANDOM = "random GPT-2 large shape"
SMOLLM2_RANDOM = "random SmolLM2-135M shape"


def load(
    name: str, dtype: str, device: str, smoke: bool, assets: Path | None
) -> tuple[object, object]:
    """The bundled SmolLM2, or a GPT-2-large-shaped model with seeded random weights (built
    on ``device``), in ``dtype``, in eval mode. With ``assets``, SmolLM2 too is built from
    its config with seeded random weights, and both tokenizers come from the folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config

    from attnmag import extract

    if name == "smollm2" and assets is None:
        model, tokenizer = extract.load_model(dtype=dtype)
        return model.to(device), tokenizer
    torch.manual_seed(0)
    if name == "smollm2":
        config, label = AutoConfig.from_pretrained(assets / "smollm2"), SMOLLM2_RANDOM
        tokenizer = AutoTokenizer.from_pretrained(assets / "smollm2")
    else:
        config, label = GPT2Config(**(GPT2_LARGE_SMOKE if smoke else GPT2_LARGE)), GPT2_RANDOM
        tokenizer = (
            gpt2_tokenizer()
            if assets is None
            else AutoTokenizer.from_pretrained(assets / "gpt2-tokenizer")
        )
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype)).eval()
    model.config.name_or_path = label
    return model, tokenizer


def bundled_texts(limit: int, assets: Path | None) -> list[str]:
    """``extract.load_corpus(limit=limit)``'s texts; with ``assets``, the same draw from the
    snippets in ``assets / "texts.json"`` (the bundled corpus need not be installed)."""
    from attnmag import extract
    from attnmag.extract.corpus import balanced_sample

    if assets is None:
        return list(extract.load_corpus(limit=limit)["text"])
    snippets = pd.DataFrame(json.loads((assets / "texts.json").read_text()))
    if limit < len(snippets):
        snippets = balanced_sample(snippets, limit=limit, seed=0)
    return snippets["text"].tolist()


def methods(model: object, tokenizer: object) -> dict[str, Callable[[list[str], dict], object]]:
    """Each method's run function: ``run(texts, options) -> frame or None``."""
    from attnmag import extract

    def bare(texts: list[str], options: dict) -> None:
        from attnmag.extract.adapters import base_model
        from attnmag.extract.batching import length_batches, pad_batch
        from attnmag.extract.norms import context_length, encode

        encoded = encode(tokenizer, texts, max_length=context_length(model))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        base, device = base_model(model), next(model.parameters()).device
        lengths = [len(ids) for ids in encoded.token_ids]
        with torch.inference_mode():
            for batch in length_batches(lengths, **options):
                inputs = pad_batch([encoded.token_ids[i] for i in batch], pad_id=pad, side="right")
                inputs.pop("position_ids")
                base(**{k: v.to(device) for k, v in inputs.items()}, use_cache=False)

    def frame(function: Callable, **kwargs: object) -> Callable:
        return lambda texts, options: function(
            model, tokenizer, texts, progress=False, **options, **kwargs
        )

    return {
        "bare": bare,
        "attnmag": frame(extract.attention_norms),
        "heads": frame(extract.attention_norms, heads=True),
        "sites": frame(extract.update_norms),
        "sites+heads": frame(extract.update_norms, heads=True),
    }


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_mb(device: str) -> str:
    return f"{torch.cuda.max_memory_allocated() / MB:.0f}" if device == "cuda" else "-"


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def time_methods(name: str, dtype: str, texts: list[str], args: argparse.Namespace) -> list[dict]:
    """One row per method: seconds (best of ``args.repeats`` after a warm-up), tokens/s,
    ratio to the bare pass, frame rows and peak GPU memory."""
    from attnmag.extract.norms import context_length, encode

    if time.perf_counter() - args.start > args.budget:
        print(f"  {name} {dtype}: skipped (past the {args.budget:.0f} s budget)", flush=True)
        return []
    model, tokenizer = load(name, dtype, args.device, args.cpu_smoke, args.assets)
    tokens = sum(
        len(ids) for ids in encode(tokenizer, texts, max_length=context_length(model)).token_ids
    )
    options = {"batch_size": args.batch_size, "max_tokens": args.max_tokens}
    runs = methods(model, tokenizer)
    runs["bare"](texts, options)  # warm-up: kernels, allocator, one-time costs
    rows, bare_seconds = [], None
    for method in args.methods:
        if time.perf_counter() - args.start > args.budget:
            print(f"  {name} {dtype} {method}: skipped (past the {args.budget:.0f} s budget)")
            continue
        reset_peak(args.device)
        best, result = float("inf"), None
        for _ in range(args.repeats):
            del result
            synchronize(args.device)
            start = time.perf_counter()
            result = runs[method](texts, options)
            synchronize(args.device)
            best = min(best, time.perf_counter() - start)
        bare_seconds = best if method == "bare" else bare_seconds
        rows.append(
            {
                "model": name,
                "dtype": dtype,
                "method": method,
                "tokens": tokens,
                "seconds": f"{best:.2f}",
                "tokens/s": f"{tokens / best:.0f}",
                "x bare": f"{best / bare_seconds:.2f}" if bare_seconds else "-",
                "frame rows": len(result) if result is not None else "-",
                "peak GPU MB": peak_mb(args.device),
            }
        )
        print("  " + "  ".join(f"{key} {value}" for key, value in rows[-1].items()), flush=True)
    del model
    return rows


def long_texts(texts: list[str], count: int, words: int) -> list[str]:
    """``count`` texts of about ``words`` words each, snippets of the corpus run together."""
    pool = " ".join(texts).split()
    return [" ".join(pool[(i * words) % len(pool) :][:words]) for i in range(count)]


def out_of_memory_retry(texts: list[str], args: argparse.Namespace) -> str:
    """Every text in one batch under a deliberately large budget: a real out-of-memory
    error on a GPU (memory capped a little above the weights), a simulated one in the CPU
    smoke run. Reports the batch sizes tried and the largest difference in norms from a
    run with the default budget (relative)."""
    from attnmag import extract
    from attnmag.extract.adapters import base_model

    model, tokenizer = load("smollm2", "float32", args.device, args.cpu_smoke, args.assets)
    batch = long_texts(texts, 8 if args.cpu_smoke else 256, 40 if args.cpu_smoke else 1500)
    sizes: list[int] = []

    def record(module: object, a: tuple, kwargs: dict) -> None:
        sizes.append(int(kwargs["input_ids"].shape[0]))
        if args.cpu_smoke and sizes[-1] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated in the CPU smoke run)")

    handle = base_model(model).register_forward_pre_hook(record, with_kwargs=True)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if args.device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, (weights + 2 * 2**30) / total))
    try:
        reset_peak(args.device)
        start = time.perf_counter()
        frame = extract.attention_norms(
            model, tokenizer, batch, batch_size=len(batch), max_tokens=10**9, progress=False
        )
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
        if args.device == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
    peak = peak_mb(args.device)
    reference = extract.attention_norms(model, tokenizer, batch, progress=False)
    got, expected = frame["norm"].to_numpy(), reference["norm"].to_numpy()
    difference = float(np.max(np.abs(got - expected) / np.abs(expected)))
    halved = sorted(set(sizes), reverse=True)
    kind = "simulated" if args.cpu_smoke else "real"
    return (
        f"out-of-memory retry ({kind}): {len(batch)} texts, {frame.attrs['n_tokens']} tokens "
        f"asked for in one batch; batch sizes tried {halved}; {seconds:.1f} s; peak GPU MB "
        f"{peak}; largest relative difference from the default budget {difference:.1e}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    listed = lambda text: text.split(",")  # noqa: E731
    parser.add_argument("--texts", type=int, default=1066, help="bundled texts (default 1066)")
    parser.add_argument(
        "--large-texts",
        type=int,
        default=512,
        help="bundled texts for the GPT-2-large-shaped model, at most --texts (default 512)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=220.0,
        help="seconds after which the methods not yet timed are skipped (default 220)",
    )
    parser.add_argument("--models", type=listed, default=list(MODELS))
    parser.add_argument("--dtypes", type=listed, default=list(DTYPES))
    parser.add_argument("--methods", type=listed, default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per method (best)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=16384, help="token budget per batch")
    parser.add_argument(
        "--assets",
        type=Path,
        help="a folder from benchmarks.gpu_assets: tokenizers, texts, SmolLM2's config",
    )
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="run the CPU-safe parts on small shapes"
    )
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    for option, known in (("models", MODELS), ("dtypes", DTYPES), ("methods", METHODS)):
        unknown = sorted(set(getattr(args, option)) - set(known))
        if unknown:
            parser.error(f"unknown {option} {unknown}; known: {', '.join(known)}")
    if not args.cpu_smoke and not torch.cuda.is_available():
        print(
            f"benchmarks.gpu: no CUDA device (torch {torch.__version__}, "
            "torch.cuda.is_available() is False); --cpu-smoke checks the CPU-safe parts",
            file=sys.stderr,
        )
        return 2
    args.device, args.start = "cpu" if args.cpu_smoke else "cuda", time.perf_counter()
    if args.cpu_smoke:
        args.texts, args.repeats = min(args.texts, 4), 1
    counts = {"smollm2": args.texts, "gpt2-large-shape": min(args.texts, args.large_texts)}
    texts = {name: bundled_texts(count, args.assets) for name, count in counts.items()}
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (smoke run)"
    notes = [
        f"device: {card}; torch {torch.__version__}; bundled texts: {counts['smollm2']} "
        f"(SmolLM2), {counts['gpt2-large-shape']} (GPT-2 large shape)"
    ]
    if args.assets is not None:
        notes.append(f"assets {args.assets}: SmolLM2 has seeded random weights ({SMOLLM2_RANDOM})")
    print("\n".join(notes), flush=True)
    # The out-of-memory check first: it takes a bounded time, and the budget then cuts only
    # the timings.
    notes.append(out_of_memory_retry(texts["smollm2"], args))
    print(notes[-1], flush=True)
    rows = [
        row
        for name in args.models
        for dtype in args.dtypes
        for row in time_methods(name, dtype, texts[name], args)
    ]
    print(table(rows) if rows else "no method timed within the budget", flush=True)
    if args.results and rows:
        lines = [f"{note[0].upper()}{note[1:]}." for note in notes]
        write_results(args.results, "python -m benchmarks.gpu", argv, rows, ["\n\n".join(lines)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
