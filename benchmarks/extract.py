"""Benchmark: attnmag's extraction against a bare forward pass and its peers.

Each method is timed from the texts to per-token norms, ``--repeats`` times in one process
(runs interleaved, order rotated each repeat, so that the load of a shared machine falls on
all alike; ratios to ``bare`` and to ``attnmag`` are medians of the ratios within a
repeat; ``CPU x`` columns are the same ratios of the process's CPU seconds, steadier on a
loaded machine); its peak growth of the resident set is measured in a fresh process per run
(``--memory-repeats``), beside the size of what the method returns (``result MB``:
attnmag's tidy frame, the peers' norm arrays), which its growth includes. ``frame B/row``
is the frame's in-memory bytes per row (``memory_usage(deep=True)``, its token category
included); with ``--shards``, each attnmag method also writes its run once, untimed, with
``extract.write_shards`` into a temporary folder, whose bytes per row (shards and
``run.json``) are ``shards B/row``. ``faults/run`` and ``sys s`` are the medians over
repeats of a run's minor page faults and of its system CPU seconds (``getrusage``): what
the run's fresh memory costs the kernel. Methods:

- ``bare``: the base model's forward pass over attnmag's batches, no hooks;
- ``bare_causal``: the same with the padding mask all ones, as attnmag runs its
  right-padded batches (the padding follows every real token, so causal attention alone
  keeps it out of their values, and the attention runs as its causal kernel);
- ``floor``: what ``attnmag`` runs less its hooks and rows: the same batches with the mask
  all ones and the positions it passes, stopped after the last layer's attention by one hook
  that records nothing (plain attnmag's floor);
- ``attnmag_measure``: attnmag's tokenizing and ``extract.norms.measure`` (its batches, hooks
  and norms), with no frame: ``floor`` to ``attnmag_measure`` to ``attnmag`` itemises
  plain attnmag's cost above its floor (the hooks and norms, then the frame, the token
  texts and the provenance);
- ``attnmag``: ``extract.attention_norms`` (tokenizing, batching, the tidy frame included);
- ``attnmag_heads``: ``extract.attention_norms(heads=True)``: each head's contribution too;
- ``attnmag_sites``: ``extract.update_norms`` at the sites ``attn``, ``mlp`` and ``resid``;
- ``attnmag_all``: ``extract.update_norms`` at every site with ``heads=True``;
- ``attnmag_vocab``: ``extract.attention_norms`` with the token columns that need no model
  (``log_frequency``, ``word_start``, ``punct``);
- ``attnmag_surprisal``: with ``token_columns=["surprisal"]`` (the pass runs through the LM
  head);
- ``attnmag_sink``: with ``sink=True`` (eager attention, its probabilities read);
- ``notebook``: the teaching notebook's way: the full causal-LM forward, batches of 64 in
  corpus order padded to the longest, hooks that keep every layer's whole attention output,
  norms taken afterwards in numpy;
- ``transformer_lens``: TransformerLens' ``TransformerBridge.run_with_cache`` with a names
  filter on ``hook_attn_out`` and ``return_type=None``, over attnmag's length-sorted batches;
- ``nnsight``, ``nnsight_stop``: an nnsight trace saving each layer's norm, and the same
  stopping after the last attention module (nnsight's best usage).

Peers that are not installed are skipped with the reason printed. ``--results FILE`` also
writes every model's table as one Markdown table (``docs/results/``, included by the
documentation's benchmark pages), the columns that hold no value left out.

Usage::

    python -m benchmarks.extract                       # 1,066 texts, 3 repeats, both models
    python -m benchmarks.extract --texts 256 --repeats 2 --models gpt2-small
    python -m benchmarks.extract --methods bare,attnmag --threads 1,2 --max-tokens 4096,16384
    python -m benchmarks.extract --methods bare,attnmag,attnmag_heads,attnmag_sites --models smollm2
    python -m benchmarks.extract --models gpt2-wide --texts 512 --threads 1 --memory-repeats 0 \
        --methods bare,attnmag,attnmag_heads,attnmag_sites --shards \
        --results docs/results/extract.md
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import importlib.util
import inspect
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from attnmag.extract.norms import default_max_tokens
from benchmarks.common import (
    KNOWN_MODELS,
    MODELS,
    bundled_or_gpt2,
    emit,
    run_worker,
    table,
    timed,
    warm_up,
    write_results,
)

MB = 2**20
METHODS = (
    "bare",
    "bare_causal",
    "floor",
    "attnmag_measure",
    "attnmag",
    "attnmag_heads",
    "attnmag_sites",
    "attnmag_all",
    "attnmag_vocab",
    "attnmag_surprisal",
    "attnmag_sink",
    "notebook",
    "transformer_lens",
    "nnsight",
    "nnsight_stop",
)
# attnmag's methods: the keyword arguments of ``write_shards`` that give the same frame.
SHARDED = {
    "attnmag": {},
    "attnmag_heads": {"heads": True},
    "attnmag_sites": {"sites": ("attn", "mlp", "resid")},
    "attnmag_all": {"sites": ("attn", "mlp", "resid"), "heads": True},
    "attnmag_vocab": {"token_columns": ("log_frequency", "word_start", "punct")},
    "attnmag_surprisal": {"token_columns": ("surprisal",)},
    "attnmag_sink": {"sink": True},
}
# Methods that measure what ``attnmag`` measures (their norm sums are compared with its).
SAME_NORMS = ("attnmag", "notebook", "transformer_lens", "nnsight", "nnsight_stop")
PEERS = {"transformer_lens": "transformer_lens", "nnsight": "nnsight", "nnsight_stop": "nnsight"}
INSTALL = {
    "transformer_lens": "pip install --no-deps transformer-lens einops fancy-einsum jaxtyping "
    "wadler-lindig beartype typeguard",
    "nnsight": "pip install --no-deps nnsight cloudpickle greenlet zstandard websocket-client",
}


def _batches(model: object, tokenizer: object, texts: list[str], options: dict) -> list[dict]:
    """attnmag's batches (length-sorted, token budget), right-padded, with their text indices."""
    from attnmag.extract.batching import length_batches, pad_batch
    from attnmag.extract.norms import context_length, encode

    encoded = encode(tokenizer, texts, max_length=context_length(model))
    lengths = [len(ids) for ids in encoded.token_ids]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return [
        pad_batch([encoded.token_ids[i] for i in batch], pad_id=pad, side="right")
        for batch in length_batches(lengths, **options)
    ]


def _masked(norms: list[torch.Tensor], mask: torch.Tensor) -> list[np.ndarray]:
    """Per text of a batch: the ``(layers, tokens)`` norms at its real tokens."""
    stacked = torch.stack(norms).float().numpy()
    keep = mask.bool().numpy()
    return [stacked[:, row, keep[row]] for row in range(keep.shape[0])]


def bare(model: object, tokenizer: object, *, causal: bool = False) -> Callable:
    """Tokenize, batch as attnmag does, and run the base model: no hooks, every layer (with
    ``causal``, the padding mask all ones, as attnmag runs its right-padded batches)."""
    from attnmag.extract.adapters import base_model

    base = base_model(model)

    def run(texts: list[str], options: dict) -> None:
        with torch.inference_mode():
            for inputs in _batches(model, tokenizer, texts, options):
                inputs.pop("position_ids")
                if causal:
                    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
                base(**inputs, use_cache=False)

    return run


def bare_causal(model: object, tokenizer: object) -> Callable:
    """The bare pass without a padding mask: causal attention alone keeps the padding, which
    follows every real token, out of their values."""
    return bare(model, tokenizer, causal=True)


def floor(model: object, tokenizer: object) -> Callable:
    """attnmag's forward pass without its rows: right-padded batches with the mask all ones
    and the positions where the model takes them, stopped after the last layer's attention
    by one hook that records nothing."""
    from attnmag.extract.adapters import attention_modules, base_model, blocks
    from attnmag.extract.hooks import StopForward

    base = base_model(model)
    takes_positions = "position_ids" in inspect.signature(base.forward).parameters
    last = len(blocks(model)) - 1

    def stop(module: object, args: tuple, output: object) -> None:
        raise StopForward

    def run(texts: list[str], options: dict) -> None:
        handle = attention_modules(model, [last])[last].register_forward_hook(stop)
        try:
            with torch.inference_mode():
                for inputs in _batches(model, tokenizer, texts, options):
                    if not takes_positions:
                        inputs.pop("position_ids")
                    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
                    try:
                        base(**inputs, use_cache=False)
                    except StopForward:
                        pass
        finally:
            handle.remove()

    return run


def attnmag_measure(model: object, tokenizer: object) -> Callable:
    """attnmag's tokenizing and ``measure`` (batches, hooks, norms), every layer's attention
    update, with no frame built."""
    from attnmag.extract.adapters import blocks
    from attnmag.extract.norms import context_length, encode, measure

    layers = list(range(len(blocks(model))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def run(texts: list[str], options: dict) -> None:
        encoded = encode(tokenizer, texts, max_length=context_length(model))
        for _ in measure(
            model,
            encoded,
            layers,
            pad_id=pad,
            padding_side=tokenizer.padding_side,
            progress=False,
            **options,
        ):
            pass

    return run


def attnmag(model: object, tokenizer: object) -> Callable:
    """``extract.attention_norms``: the tidy frame."""
    from attnmag import extract

    def run(texts: list[str], options: dict) -> pd.DataFrame:
        return extract.attention_norms(model, tokenizer, texts, progress=False, **options)

    return run


def attnmag_heads(model: object, tokenizer: object) -> Callable:
    """``extract.attention_norms(heads=True)``: the whole update and each head's."""
    from attnmag import extract

    def run(texts: list[str], options: dict) -> pd.DataFrame:
        return extract.attention_norms(
            model, tokenizer, texts, heads=True, progress=False, **options
        )

    return run


def attnmag_sites(model: object, tokenizer: object, *, heads: bool = False) -> Callable:
    """``extract.update_norms`` at the sites attn, mlp and resid (every block runs)."""
    from attnmag import extract

    def run(texts: list[str], options: dict) -> pd.DataFrame:
        return extract.update_norms(model, tokenizer, texts, heads=heads, progress=False, **options)

    return run


def attnmag_all(model: object, tokenizer: object) -> Callable:
    """``extract.update_norms`` at every site, with each head's contribution."""
    return attnmag_sites(model, tokenizer, heads=True)


def attnmag_with(model: object, tokenizer: object, **columns: object) -> Callable:
    """``extract.attention_norms`` with the token or sink columns ``columns``."""
    from attnmag import extract

    def run(texts: list[str], options: dict) -> pd.DataFrame:
        return extract.attention_norms(
            model, tokenizer, texts, progress=False, **columns, **options
        )

    return run


def notebook(model: object, tokenizer: object) -> Callable:
    """The notebook's way: whole attention outputs kept for every batch, norms at the end."""
    from attnmag.extract.adapters import attention_modules, blocks

    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    layers = list(range(len(blocks(model))))

    def run(texts: list[str], options: dict) -> list[np.ndarray]:
        outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        handles = [
            module.register_forward_hook(
                lambda m, a, out, layer=layer: outputs[layer].append(
                    (out[0] if isinstance(out, tuple) else out).detach()
                )
            )
            for layer, module in attention_modules(model, layers).items()
        ]
        masks = []
        try:
            with torch.no_grad():
                for start in range(0, len(texts), 64):
                    batch = tokenizer(texts[start : start + 64], padding=True, return_tensors="pt")
                    model(**batch)
                    masks.append(batch["attention_mask"].bool().numpy())
        finally:
            for handle in handles:
                handle.remove()
        return [
            np.linalg.norm(outputs[layer][b].numpy(), axis=-1)[masks[b]]
            for b in range(len(masks))
            for layer in layers
        ]

    return run


def transformer_lens(model: object, tokenizer: object) -> Callable:
    """TransformerLens' ``run_with_cache``, caching only the attention outputs."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        model.config.name_or_path, hf_model=model, tokenizer=tokenizer
    )
    names = [f"blocks.{i}.hook_attn_out" for i in range(bridge.cfg.n_layers)]

    def run(texts: list[str], options: dict) -> list[np.ndarray]:
        results: list[np.ndarray] = []
        with torch.inference_mode():
            for inputs in _batches(model, tokenizer, texts, options):
                _, cache = bridge.run_with_cache(
                    inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    names_filter=lambda name: name.endswith("hook_attn_out"),
                    return_type=None,
                )
                norms = [cache[name].norm(dim=-1) for name in names]
                results += _masked(norms, inputs["attention_mask"])
        return results

    return run


def _nnsight(model: object, tokenizer: object, *, stop: bool) -> Callable:
    from nnsight import NNsight

    from attnmag.extract.adapters import adapter_for, base_model

    traced = NNsight(base_model(model))
    adapter = adapter_for(model)

    def trace(inputs: dict) -> list[torch.Tensor]:
        with traced.trace(**inputs, use_cache=False) as tracer:
            saved = list().save()
            container = traced
            for name in adapter.blocks.split("."):
                container = getattr(container, name)
            for block in container:
                saved.append(getattr(block, adapter.module).output[0].norm(dim=-1))
            if stop:
                tracer.stop()
        return saved

    def run(texts: list[str], options: dict) -> list[np.ndarray]:
        results: list[np.ndarray] = []
        with torch.inference_mode():
            for inputs in _batches(model, tokenizer, texts, options):
                inputs.pop("position_ids")
                results += _masked(trace(inputs), inputs["attention_mask"])
        return results

    return run


def nnsight(model: object, tokenizer: object) -> Callable:
    """An nnsight trace saving each layer's norm; the whole forward pass runs."""
    return _nnsight(model, tokenizer, stop=False)


def nnsight_stop(model: object, tokenizer: object) -> Callable:
    """The same, stopping the trace after the last attention module."""
    return _nnsight(model, tokenizer, stop=True)


SETUPS: dict[str, Callable] = {
    "bare": bare,
    "bare_causal": bare_causal,
    "floor": floor,
    "attnmag_measure": attnmag_measure,
    "attnmag": attnmag,
    "attnmag_heads": attnmag_heads,
    "attnmag_sites": attnmag_sites,
    "attnmag_all": attnmag_all,
    **{
        name: functools.partial(attnmag_with, **SHARDED[name])
        for name in ("attnmag_vocab", "attnmag_surprisal", "attnmag_sink")
    },
    "notebook": notebook,
    "transformer_lens": transformer_lens,
    "nnsight": nnsight,
    "nnsight_stop": nnsight_stop,
}


def _setup(method: str, model: object, tokenizer: object) -> Callable:
    """``method``'s run function, on copies where the method changes the model or tokenizer
    (TransformerLens forces eager attention, nnsight wraps modules, the notebook sets a pad
    token), so that methods measured in one process do not affect each other."""
    if method in PEERS or method == "notebook":
        model, tokenizer = copy.deepcopy(model), copy.deepcopy(tokenizer)
    return SETUPS[method](model, tokenizer)


def _checksum(result: list[np.ndarray] | pd.DataFrame | None) -> float | None:
    """The sum of every norm a method returned (the frame's ``norm`` column for attnmag)."""
    if isinstance(result, pd.DataFrame):
        result = [result["norm"].to_numpy()]
    return None if result is None else sum(float(n.sum(dtype=np.float64)) for n in result)


def _result_bytes(result: list[np.ndarray] | pd.DataFrame | None) -> int:
    """The size of what a method returned: the tidy frame, or the norm arrays."""
    if isinstance(result, pd.DataFrame):
        return int(result.memory_usage(deep=True).sum())
    return 0 if result is None else sum(a.nbytes for a in result)


def _frame_bytes_per_row(result: object) -> float | None:
    """A frame's in-memory bytes per row (its token category included); None otherwise."""
    if not isinstance(result, pd.DataFrame) or not len(result):
        return None
    return float(result.memory_usage(deep=True).sum()) / len(result)


def shard_bytes_per_row(
    method: str, model: object, tokenizer: object, texts: list[str], options: dict
) -> float:
    """Bytes per row of the shard folder ``write_shards`` writes for ``method``'s run (its
    Parquet shards and ``run.json``), written once into a temporary folder."""
    from attnmag.extract.shards import write_shards

    with tempfile.TemporaryDirectory(prefix="attnmag-bench-") as folder:
        paths = write_shards(
            model,
            tokenizer,
            texts,
            Path(folder) / "norms",
            progress=False,
            **options,
            **SHARDED[method],
        )
        files = [p for p in (Path(folder) / "norms").iterdir() if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    return size / rows


def _inputs(args: argparse.Namespace, model_name: str) -> tuple[object, object, list[str], int]:
    """The model (warmed up), its tokenizer, the texts and their token count."""
    from attnmag import extract
    from attnmag.extract.norms import context_length, encode

    model, tokenizer = bundled_or_gpt2(model_name)
    warm_up(model)
    texts = list(extract.load_corpus(limit=args.texts)["text"])
    encoded = encode(tokenizer, texts, max_length=context_length(model))
    return model, tokenizer, texts, sum(len(ids) for ids in encoded.token_ids)


def worker(args: argparse.Namespace) -> None:
    """Measure one variant's peak memory growth (and time) once, in this fresh process."""
    variant = variants(args)[0]
    torch.set_num_threads(variant["threads"])
    model, tokenizer, texts, tokens = _inputs(args, args.models[0])
    run = SETUPS[variant["method"]](model, tokenizer)
    seconds, growth, norms = timed(run, texts, _options(variant))
    emit(
        {
            "seconds": seconds,
            "rss_growth": growth,
            "result_bytes": _result_bytes(norms),
            "tokens": tokens,
            "norm_sum": _checksum(norms),
        }
    )


def _options(variant: dict) -> dict:
    return {"batch_size": variant["batch"], "max_tokens": variant["budget"]}


def time_in_process(args: argparse.Namespace, model_name: str, plan: list[dict]) -> dict:
    """Seconds of every variant, ``args.repeats`` times, in this process: runs of a repeat
    follow each other closely (order rotated per repeat), so that a changing load on the
    machine falls on all of them alike. Returns ``{key: [result, ...]}``."""
    model, tokenizer, texts, tokens = _inputs(args, model_name)
    setups = {v["method"]: _setup(v["method"], model, tokenizer) for v in plan}
    bare(model, tokenizer)(texts, _options(plan[0]))  # untimed: one-time costs of each shape
    runs: dict[tuple, list[dict]] = {tuple(v.values()): [] for v in plan}
    for repeat in range(args.repeats):
        shift = repeat % len(plan)
        for variant in plan[shift:] + plan[:shift]:
            torch.set_num_threads(variant["threads"])
            usage = resource.getrusage(resource.RUSAGE_SELF)
            start, cpu = time.perf_counter(), time.process_time()
            norms = setups[variant["method"]](texts, _options(variant))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            after = resource.getrusage(resource.RUSAGE_SELF)
            runs[tuple(variant.values())].append(
                {
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "system_seconds": after.ru_stime - usage.ru_stime,
                    "faults": after.ru_minflt - usage.ru_minflt,
                    "tokens": tokens,
                    "norm_sum": _checksum(norms),
                    "frame_bytes_per_row": _frame_bytes_per_row(norms),
                    "rows": len(norms) if isinstance(norms, pd.DataFrame) else None,
                }
            )
            del norms
            gc.collect()
            print(
                f"  {model_name} {variant} run {repeat + 1}: {seconds:.2f} s ({cpu:.2f} s CPU)",
                flush=True,
            )
    if args.shards:
        for variant in plan:
            if variant["method"] in SHARDED:
                torch.set_num_threads(variant["threads"])
                size = shard_bytes_per_row(
                    variant["method"], model, tokenizer, texts, _options(variant)
                )
                for result in runs[tuple(variant.values())]:
                    result["shard_bytes_per_row"] = size
    return runs


def measure_memory(args: argparse.Namespace, model_name: str, plan: list[dict]) -> dict:
    """Each variant run in a fresh process per repeat, for its peak RSS growth (and its
    time). ``{key: [result, ...]}``."""
    results: dict[tuple, list[dict]] = {tuple(v.values()): [] for v in plan}
    for _ in range(args.memory_repeats):
        for variant in plan:
            result = run_worker("benchmarks.extract", _worker_args(model_name, variant, args.texts))
            results[tuple(variant.values())].append(result)
            print(
                f"  {model_name} {variant}: {result['rss_growth'] / MB:.0f} MB, "
                f"{result['seconds']:.1f} s (fresh process)",
                flush=True,
            )
    return results


def variants(args: argparse.Namespace) -> list[dict]:
    """Every (method, threads, batch size, token budget) to measure; the batch options vary
    only for ``bare`` and ``attnmag``, peers use the first ones."""
    found = []
    for method in args.methods:
        sizes = args.batch_size if method in ("bare", "attnmag") else args.batch_size[:1]
        budgets = args.max_tokens if method in ("bare", "attnmag") else args.max_tokens[:1]
        for threads in args.threads:
            for size in sizes:
                for budget in budgets:
                    found.append(
                        {"method": method, "threads": threads, "batch": size, "budget": budget}
                    )
    return found


def _worker_args(model: str, variant: dict, texts: int) -> list[str]:
    return [
        f"--models={model}",
        f"--methods={variant['method']}",
        f"--threads={variant['threads']}",
        f"--batch-size={variant['batch']}",
        f"--max-tokens={variant['budget']}",
        f"--texts={texts}",
    ]


def paired_ratio(values: list[float], base: list[float] | None) -> str:
    """The median over repeats of ``value / base value`` (the runs of one repeat paired)."""
    if not base:
        return "-"
    ratios = [v / max(b, 1e-9) for v, b in zip(values, base, strict=True)]
    return f"{statistics.median(ratios):.3f}"


def _cpu_ratio(results: list[dict], base: list[dict] | None) -> str:
    """``paired_ratio`` of the processes' CPU seconds (steadier than wall time where other
    work shares the cores), where the runs recorded them."""
    if not base or "cpu_seconds" not in results[0]:
        return "-"
    return paired_ratio([r["cpu_seconds"] for r in results], [r["cpu_seconds"] for r in base])


def _ratio_of_medians(values: list[int] | None, base: list[int] | None) -> str:
    if not values or not base:
        return "-"
    return f"{statistics.median(values) / max(statistics.median(base), 1):.2f}"


def _ns_per_row(results: list[dict], base: list[dict] | None = None, key: str = "seconds") -> str:
    """Median nanoseconds per frame row over repeats: of the whole run, or (with ``base``)
    of its time beyond the paired bare pass's; ``key`` ``cpu_seconds`` for CPU time."""
    if not results[0].get("rows") or key not in results[0]:
        return "-"
    spent = [
        r[key] - (b[key] if base else 0.0) for r, b in zip(results, base or results, strict=True)
    ]
    return f"{statistics.median(spent) / results[0]['rows'] * 1e9:.0f}"


def _median_of(results: list[dict], key: str, form: str) -> str:
    """The median over repeats of ``key`` (``-`` where the runs did not record it)."""
    if key not in results[0]:
        return "-"
    return form.format(statistics.median(r[key] for r in results))


def _per_row(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summarise(
    model: str,
    runs: dict[tuple, list[dict]],
    fresh: dict[tuple, list[dict]],
    args: argparse.Namespace,
) -> list[dict]:
    """The table rows of one model: medians over repeats, and paired ratios to the bare pass
    with the same threads and the first batch options."""
    growth = {key: [r["rss_growth"] for r in results] for key, results in fresh.items()}
    rows = []
    for key, results in runs.items():
        method, threads, size, budget = key
        base_key = ("bare", threads, args.batch_size[0], args.max_tokens[0])
        ref = runs.get(("attnmag", threads, args.batch_size[0], args.max_tokens[0]))
        seconds = [r["seconds"] for r in results]
        total = results[0]["norm_sum"]
        rows.append(
            {
                "model": model,
                "method": method,
                "threads": threads,
                "batch": size,
                "max_tokens": budget,
                "median s": f"{statistics.median(seconds):.2f}",
                "tokens/s": f"{results[0]['tokens'] / statistics.median(seconds):.0f}",
                "x bare": paired_ratio(
                    seconds, [r["seconds"] for r in runs[base_key]] if base_key in runs else None
                ),
                "x attnmag": paired_ratio(seconds, [r["seconds"] for r in ref] if ref else None),
                "CPU x bare": _cpu_ratio(results, runs.get(base_key)),
                "CPU x attnmag": _cpu_ratio(results, ref),
                "RSS growth MB": f"{statistics.median(growth[key]) / MB:.0f}"
                if growth.get(key)
                else "-",
                "x bare RSS": _ratio_of_medians(growth.get(key), growth.get(base_key)),
                "result MB": f"{fresh[key][0]['result_bytes'] / MB:.0f}" if fresh.get(key) else "-",
                "rows": results[0].get("rows") or "-",
                "ns/row": _ns_per_row(results),
                "added ns/row": _ns_per_row(results, runs.get(base_key)),
                "added CPU ns/row": _ns_per_row(results, runs.get(base_key), "cpu_seconds"),
                "frame B/row": _per_row(results[0].get("frame_bytes_per_row")),
                "shards B/row": _per_row(results[0].get("shard_bytes_per_row")),
                "faults/run": _median_of(results, "faults", "{:.0f}"),
                "sys s": _median_of(results, "system_seconds", "{:.3f}"),
                "runs s": " ".join(f"{s:.2f}" for s in seconds),
                "norm sum vs attnmag": f"{total / ref[0]['norm_sum'] - 1:+.1e}"
                if total is not None and ref and method in SAME_NORMS
                else "-",
            }
        )
    return rows


def heading(model: str, runs: dict[tuple, list[dict]], args: argparse.Namespace) -> str:
    """One line on a model's table: its texts and tokens, and how it was measured."""
    tokens = next(iter(runs.values()))[0]["tokens"]
    return (
        f"{model}: {args.texts} texts, {tokens} tokens; time: "
        + (f"{args.repeats} repeats in one process" if args.repeats else "the fresh processes")
        + f"; memory: {args.memory_repeats} fresh process(es) per method"
    )


def shown(rows: list[dict]) -> list[dict]:
    """``rows`` without the columns that hold no value in any row (``-`` throughout)."""
    kept = [name for name in rows[0] if any(row[name] != "-" for row in rows)]
    return [{name: row[name] for name in kept} for row in rows]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    listed = lambda kind: lambda text: [kind(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--texts", type=int, default=1066, help="bundled texts (default 1066)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs in one process (default 3; 0: none)"
    )
    parser.add_argument(
        "--models",
        type=listed(str),
        default=list(MODELS),
        help=f"comma-separated, of {', '.join(KNOWN_MODELS)} (default {','.join(MODELS)})",
    )
    parser.add_argument("--methods", type=listed(str), default=list(METHODS))
    parser.add_argument("--threads", type=listed(int), default=[torch.get_num_threads()])
    parser.add_argument("--batch-size", type=listed(int), default=[64])
    parser.add_argument(
        "--max-tokens", type=listed(int), default=[default_max_tokens("cpu")], help="token budgets"
    )
    parser.add_argument(
        "--memory-repeats", type=int, default=1, help="fresh processes per method for memory"
    )
    parser.add_argument(
        "--shards",
        action="store_true",
        help="also write each attnmag method's run as shards once, for their bytes per row",
    )
    parser.add_argument("--results", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    for method in [m for m in args.methods if m in PEERS]:
        if importlib.util.find_spec(PEERS[method]) is None:
            print(
                f"skipping {method}: {PEERS[method]} is not installed "
                f"({INSTALL[PEERS[method]] if PEERS[method] in INSTALL else ''})"
            )
            args.methods.remove(method)
    plan = variants(args)
    load = os.getloadavg()[0]
    rows, headings = [], []
    for model in args.models:
        fresh = measure_memory(args, model, plan)
        runs = time_in_process(args, model, plan) if args.repeats else fresh
        rows += summarise(model, runs, fresh, args)
        headings.append(heading(model, runs, args))
        print(f"\n{headings[-1]}\n{table(rows[-len(plan) :])}", flush=True)
    if args.results:
        notes = [*(f"- {line}" for line in headings), f"- load average at the start: {load:.1f}"]
        write_results(args.results, "python -m benchmarks.extract", argv, shown(rows), notes)


if __name__ == "__main__":
    main()
