"""The ``attnmag`` command line: ``run`` does every stage; ``extract``, ``fit``, ``report``
one each.

Holds ``main`` (the console script) and one small function per sub-command. Bad input is
one line on stderr and a non-zero exit, never a traceback; an existing output is never
overwritten without ``--force``, and is replaced only once the new one is complete.

Usage::

    attnmag run                                   # bundled model and corpus -> out/index.html
    attnmag run --model gpt2-large --dataset cornell-movie-review-data/rotten_tomatoes --out rt
    attnmag extract --out norms/                  # resumable Parquet shards
    attnmag fit norms/ --out tables/
    attnmag report norms/ --tables tables/ --out report/
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from attnmag.errors import AttnmagError

TREND_METHODS = ("aggregate", "ols", "mixed")
LAG_METHODS = ("ols", "mixed")
FRAME_FILE = "norms.parquet"


def parse_layers(text: str) -> list[int]:
    """``"0,2,5-7"`` -> ``[0, 2, 5, 6, 7]``."""
    layers: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            layers.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"layers must look like 0,2,5-7, not {text!r}") from None
    return layers


def parse_choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """A parser for a comma-separated subset of ``allowed``."""

    def parse(text: str) -> list[str]:
        chosen = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in chosen if item not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(allowed)} (comma-separated), not {text!r}"
            )
        return chosen

    return parse


@contextmanager
def output_folder(out: Path, *, force: bool) -> Iterator[Path]:
    """A temporary folder beside ``out`` that replaces ``out`` once the block succeeds.

    Without ``force`` an existing ``out`` is refused before any work starts. If the block
    fails, ``out`` is untouched and what was written so far stays in the temporary folder.
    """
    if out.exists() and not force:
        raise AttnmagError(f"{out} exists; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield partial
    except BaseException:
        if not any(partial.iterdir()):
            partial.rmdir()
        else:
            print(f"attnmag: what was computed so far is kept in {partial}", file=sys.stderr)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    partial.rename(out)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        help="hub id, local folder or .gguf file (default: bundled SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--dataset",
        help="hub dataset or local csv/json/jsonl/parquet/txt "
        "(default: bundled Rotten Tomatoes snippets)",
    )
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument("--text-column", default="text", help="column holding the texts")
    parser.add_argument(
        "--limit", type=int, default=1066, help="number of texts (default 1066; 0 means all)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts per batch at most")
    parser.add_argument("--layers", type=parse_layers, help="e.g. 0,2,5-7 (default: all)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="weights' dtype (norms are float32 whatever it is)",
    )
    parser.add_argument(
        "--device", help="e.g. cuda:1, cpu (default: cuda:LOCAL_RANK if there is a GPU, else cpu)"
    )


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-position",
        type=int,
        default=30,
        help="last position of the position-trend fits (default 30)",
    )
    parser.add_argument(
        "--methods",
        type=parse_choices(TREND_METHODS),
        default=list(TREND_METHODS),
        help="aggregate,ols,mixed (lag fits use ols and mixed among them)",
    )
    parser.add_argument("--n-jobs", type=int, help="processes for fitting layers (default: all)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``attnmag`` and its sub-commands."""
    parser = argparse.ArgumentParser(prog="attnmag", description=__doc__.split("\n")[0])
    parser.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="extract, fit and report in one go")
    _add_source_options(run)
    _add_fit_options(run)
    run.add_argument(
        "--format",
        type=parse_choices(("html", "md")),
        default=["html", "md"],
        help="report formats: html,md",
    )
    run.add_argument("--out", type=Path, default=Path("out"), help="output folder (default out)")
    run.add_argument("--force", action="store_true", help="replace an existing output folder")

    extract = commands.add_parser("extract", help="norms -> resumable Parquet shards")
    _add_source_options(extract)
    extract.add_argument("--out", type=Path, required=True, help="shard folder")

    fit = commands.add_parser("fit", help="frame -> coefficient tables (CSV)")
    fit.add_argument("frame", type=Path, help="Parquet file or shard folder")
    _add_fit_options(fit)
    fit.add_argument("--out", type=Path, required=True, help="folder for the CSV tables")
    fit.add_argument("--force", action="store_true", help="replace an existing output folder")

    report = commands.add_parser("report", help="frame (+ tables) -> HTML and Markdown report")
    report.add_argument("frame", type=Path, help="Parquet file or shard folder")
    report.add_argument("--tables", type=Path, help="folder written by `attnmag fit`")
    _add_fit_options(report)
    report.add_argument("--format", type=parse_choices(("html", "md")), default=["html", "md"])
    report.add_argument("--out", type=Path, required=True, help="report folder")
    report.add_argument("--force", action="store_true", help="replace an existing output folder")
    return parser


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _load_inputs(args: argparse.Namespace) -> tuple[object, object, object]:
    """Corpus first (cheap, and its errors are common), then the model."""
    from attnmag import extract

    texts = extract.load_corpus(
        args.dataset, split=args.split, text_column=args.text_column, limit=args.limit or None
    )
    model, tokenizer = extract.load_model(
        args.model, dtype=args.dtype, device=args.device or default_device()
    )
    return model, tokenizer, texts


def default_device() -> str:
    """``cuda:LOCAL_RANK`` where a GPU is present (one per process under torchrun), else cpu."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return "cpu"


def _timed(seconds: dict[str, float], stage: str, work: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = work()
    seconds[stage] = time.perf_counter() - start
    return result


def _fit_tables(frame: object, args: argparse.Namespace, tables: dict | None = None) -> dict:
    from attnmag.reports.write import fit_tables

    return fit_tables(
        frame,
        tables=tables,
        trend_methods=args.methods,
        lag_methods=[m for m in args.methods if m in LAG_METHODS],
        max_position=args.max_position,
        n_jobs=args.n_jobs,
    )


def command_run(args: argparse.Namespace) -> Path:
    """Extract, fit and report into ``args.out``; return the path of the main report."""
    from attnmag import extract, reports

    seconds: dict[str, float] = {}
    with output_folder(args.out, force=args.force) as folder:
        model, tokenizer, texts = _timed(seconds, "load", lambda: _load_inputs(args))
        _say(args, f"load: {seconds['load']:.1f} s, {len(texts):,} texts")
        frame = _timed(
            seconds,
            "extract",
            lambda: extract.attention_norms(
                model,
                tokenizer,
                texts,
                batch_size=args.batch_size,
                layers=args.layers,
                progress=False if args.quiet else None,
            ),
        )
        frame.to_parquet(folder / FRAME_FILE)
        _say(args, f"extract: {seconds['extract']:.1f} s, {len(frame):,} rows")
        tables = _timed(seconds, "fit", lambda: _fit_tables(frame, args))
        _say(args, f"fit: {seconds['fit']:.1f} s")
        paths = _timed(
            seconds,
            "report",
            lambda: reports.write_report(
                frame,
                folder,
                formats=args.format,
                tables=tables,
                max_position=args.max_position,
                timings=seconds,
            ),
        )
        _say(args, f"report: {seconds['report']:.1f} s")
    main_file = "index.html" if "html" in args.format else "report.md"
    return args.out / Path(paths[main_file]).relative_to(folder)


def command_extract(args: argparse.Namespace) -> Path:
    """Measure into resumable Parquet shards under ``args.out``; return the folder."""
    from attnmag.extract.shards import write_shards

    model, tokenizer, texts = _load_inputs(args)
    write_shards(
        model,
        tokenizer,
        texts,
        args.out,
        batch_size=args.batch_size,
        layers=args.layers,
        progress=False if args.quiet else None,
    )
    return args.out


def command_fit(args: argparse.Namespace) -> Path:
    """Fit the frame at ``args.frame``; write the tables as CSV into ``args.out``."""
    from attnmag import extract

    frame = extract.read_frame(args.frame)
    with output_folder(args.out, force=args.force) as folder:
        for name, table in _fit_tables(frame, args).items():
            if table is not None:
                table.to_csv(folder / f"{name}.csv", index=False)
    return args.out


def command_report(args: argparse.Namespace) -> Path:
    """Write the report on ``args.frame`` (tables from ``--tables`` or fitted) into ``args.out``."""
    import pandas as pd

    from attnmag import extract, reports

    frame = extract.read_frame(args.frame)
    tables = None
    if args.tables is not None:
        files = {p.stem: p for p in args.tables.glob("*.csv")}
        if not {"position_trend", "lag_effects"} <= set(files):
            raise AttnmagError(
                f"{args.tables} lacks position_trend.csv and lag_effects.csv "
                "(written by `attnmag fit`)"
            )
        tables = {name: pd.read_csv(path) for name, path in files.items()}
    with output_folder(args.out, force=args.force) as folder:
        paths = reports.write_report(
            frame,
            folder,
            formats=args.format,
            tables=_fit_tables(frame, args, tables),
            max_position=args.max_position,
        )
    main_file = "index.html" if "html" in args.format else "report.md"
    return args.out / Path(paths[main_file]).relative_to(folder)


COMMANDS = {
    "run": command_run,
    "extract": command_extract,
    "fit": command_fit,
    "report": command_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``attnmag`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.quiet:
        import transformers

        transformers.logging.disable_progress_bar()
        transformers.logging.set_verbosity_error()
    try:
        path = COMMANDS[args.command](args)
    except AttnmagError as error:
        print(f"attnmag: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnmag: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — one line, not a traceback, unless --debug
        if args.debug:
            raise
        print(
            f"attnmag: unexpected error: {type(error).__name__}: {error} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0
