"""The ``attnmag`` command line: ``run`` does every stage; ``extract``, ``fit``, ``report``
one each.

Holds ``main`` (the command line as a function), ``console`` (the console script),
``build_parser`` and one small function per sub-command, with the option parsers they
share. Every option is checked before any work
(bad input is one line on stderr and exit status 2, never a traceback); outputs are written
beside their final name and swapped in complete (see ``attnmag.outputs``).

Usage::

    attnmag run                                   # bundled model and corpus -> out/index.html
    attnmag run --model gpt2-large --dataset cornell-movie-review-data/rotten_tomatoes --out rt
    attnmag run --model bundled --model gpt2 --sites attn,mlp,resid --heads --out both
    attnmag extract --out norms/                  # resumable Parquet shards
    attnmag fit norms/ --out tables/
    attnmag report norms/ --tables tables/ --out report/
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from attnmag.errors import AttnmagError
from attnmag.outputs import check_output, check_target, replacing

__all__ = ["build_parser", "console", "main", "parse_layers"]

FRAME_FILE = "norms.parquet"
#: The ``--model`` value naming the bundled model, and that model's name in a combined frame.
BUNDLED = "bundled"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
FORMATS = ("html", "md")
DESCRIPTION = (
    "Measure how strongly each attention sub-layer of a causal language model adjusts the "
    "residual stream, token by token, fit statistical models to those magnitudes, and "
    "write the tables and an HTML/Markdown report."
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ``AttnmagError`` (one line, exit status 2).

    Examples
    --------
    >>> Parser(prog="attnmag").parse_args(["--unknown"])
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: unrecognized arguments: --unknown
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise the message instead of printing the usage and exiting."""
        raise AttnmagError(message)


def positive_int(text: str) -> int:
    """A whole number of at least 1, as an argparse ``type`` (``"3"`` -> 3)."""
    return _whole_number(text, least=1)


def non_negative_int(text: str) -> int:
    """A whole number of at least 0, as an argparse ``type`` (``"0"`` -> 0)."""
    return _whole_number(text, least=0)


def _whole_number(text: str, *, least: int) -> int:
    """``text`` as a whole number of at least ``least``, else argparse's error."""
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least {least}, not {text!r}"
        )
    return value


def conf_level(text: str) -> float:
    """A confidence level strictly between 0 and 1, as an argparse ``type``.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    float
        The level; anything else is argparse's error.

    Examples
    --------
    >>> conf_level("0.9")
    0.9
    """
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number strictly between 0 and 1, not {text!r}")
    return value


def parse_layers(text: str) -> list[int]:
    """Layer indices (0 or more) and ascending ranges, as ``--layers`` takes them.

    Parameters
    ----------
    text : str
        Comma-separated indices and ``a-b`` ranges.

    Returns
    -------
    list of int
        The layers; anything else is argparse's error.

    Examples
    --------
    >>> parse_layers("0,2,5-7")
    [0, 2, 5, 6, 7]
    """
    layers: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first < 0 or last < first:
                raise ValueError
            layers.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be layer indices (0 or more) and ascending ranges such as 0,2,5-7, not {text!r}"
        ) from None
    return layers


def parse_choices(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    """A parser for a comma-separated subset of ``allowed``, as an argparse ``type``.

    Parameters
    ----------
    allowed : sequence of str
        The choices.

    Returns
    -------
    callable
        ``text -> list of str``; a name not in ``allowed`` is argparse's error.
    """

    def parse(text: str) -> list[str]:
        chosen = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in chosen if item not in allowed]
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(
                f"choose from {','.join(allowed)} (comma-separated), not {text!r}"
            )
        return chosen

    return parse


def _add_common_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    """``--quiet`` and ``--debug``, accepted before and after the sub-command."""
    parser.add_argument(
        "--quiet", action="store_true", default=default, help="no progress bars or stage lines"
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the traceback of an unexpected error",
    )


def _add_source_options(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    from attnmag.extract.sites import SITES

    if several:
        parser.add_argument(
            "--model",
            action="append",
            help="hub id, local folder, .gguf file, or 'bundled' (SmolLM2-135M-Instruct, the "
            "default); give it again for each further model, measured in turn on the same texts",
        )
    else:
        parser.add_argument(
            "--model",
            help="hub id, local folder, .gguf file, or 'bundled' (SmolLM2-135M-Instruct, the "
            "default)",
        )
    parser.add_argument(
        "--dataset",
        help="hub dataset, local csv/json/jsonl/parquet/txt, or bundled-long:N (bundled "
        "snippets concatenated into texts of at most N words) "
        "(default: bundled Rotten Tomatoes snippets)",
    )
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument(
        "--text-column", default="text", help="column holding the texts (default: text)"
    )
    parser.add_argument(
        "--limit",
        type=non_negative_int,
        default=1066,
        help="number of texts (default: 1066; 0 means all)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="texts per batch at most (default: 64)"
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        help="tokens kept per text; longer texts are truncated and counted "
        "(default: the model's context)",
    )
    parser.add_argument("--layers", type=parse_layers, help="e.g. 0,2,5-7 (default: all)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="weights' dtype (default: as saved; norms are float32 whatever it is)",
    )
    parser.add_argument(
        "--device", help="e.g. cuda:1, cpu (default: cuda:LOCAL_RANK if there is a GPU, else cpu)"
    )
    parser.add_argument(
        "--sites",
        type=parse_choices(SITES),
        help=f"sites to measure, comma-separated from {','.join(SITES)} (attn: the attention "
        "update; mlp: the MLP's update; resid: the residual stream entering each block); "
        "default: the attention update alone, without a site column",
    )
    parser.add_argument(
        "--heads",
        action="store_true",
        help="also measure each attention head's own contribution (a head column)",
    )


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    from attnmag.models import CONF_LEVEL, MAX_POSITION, METHODS

    trend, lags = METHODS["position_trend"], METHODS["lag_effects"]
    parser.add_argument(
        "--max-position",
        type=positive_int,
        default=MAX_POSITION,
        help=f"last position of the position-trend fits (default: {MAX_POSITION})",
    )
    parser.add_argument(
        "--methods",
        type=parse_choices(trend),
        default=list(trend),
        help=f"position-trend methods, comma-separated (default: {','.join(trend)})",
    )
    parser.add_argument(
        "--lag-methods",
        type=parse_choices(lags),
        default=list(lags),
        help=f"lag-effect methods, comma-separated (default: {','.join(lags)})",
    )
    parser.add_argument(
        "--conf-level",
        type=conf_level,
        default=CONF_LEVEL,
        help=f"confidence level of the intervals, strictly between 0 and 1 (default: {CONF_LEVEL})",
    )
    parser.add_argument(
        "--n-jobs", type=positive_int, help="threads for the fits (default: all cores)"
    )


def _add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        type=parse_choices(FORMATS),
        default=list(FORMATS),
        help="report formats, comma-separated (default: html,md)",
    )


def _add_output_options(parser: argparse.ArgumentParser, *, what: str, default: str | None):
    parser.add_argument(
        "--out",
        type=Path,
        default=None if default is None else Path(default),
        required=default is None,
        help=f"{what}" + ("" if default is None else f" (default: {default})"),
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output folder written by attnmag (never anything else)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``attnmag`` and its sub-commands.

    Returns
    -------
    argparse.ArgumentParser
        The parser of ``run``, ``extract``, ``fit`` and ``report``.

    Examples
    --------
    >>> build_parser().parse_args(["extract", "--out", "norms", "--layers", "0-1"]).layers
    [0, 1]
    """
    parser = Parser(prog="attnmag", description=DESCRIPTION)
    _add_common_options(parser, default=False)
    common = Parser(add_help=False)
    _add_common_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, details: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=summary,
            description=f"{summary[0].upper()}{summary[1:]}. {details}",
            parents=[common],
        )

    run = command(
        "run",
        "extract, fit and report in one go",
        "Writes a folder with the report (index.html, report.md, figures), the frame "
        f"({FRAME_FILE}) and the coefficient tables (CSV).",
    )
    _add_source_options(run, several=True)
    _add_fit_options(run)
    _add_format_option(run)
    _add_output_options(run, what="output folder", default="out")

    extract = command(
        "extract",
        "measure the norms into resumable Parquet shards",
        "Each shard holds --shard-texts texts and is recorded with its checksum in the "
        "folder's run.json as it completes. Rerunning the same command resumes: finished "
        "shards are verified and skipped. A folder written with other arguments is refused.",
    )
    _add_source_options(extract)
    extract.add_argument(
        "--shard-texts",
        type=positive_int,
        default=1024,
        help="texts per shard (default: 1024)",
    )
    extract.add_argument("--out", type=Path, required=True, help="shard folder (new or resumed)")

    fit = command(
        "fit",
        "fit the position-trend and lag-effect models to a frame",
        "Writes position_trend.csv, lag_effects.csv and glance.csv. A shard folder is "
        "fitted from sums streamed from its shards, in memory that does not grow with its rows.",
    )
    fit.add_argument("frame", type=Path, help="Parquet file or shard folder")
    _add_fit_options(fit)
    _add_output_options(fit, what="folder for the CSV tables", default=None)

    report = command(
        "report",
        "write the HTML and Markdown report on a frame",
        "Uses the tables of `attnmag fit` where --tables gives them, else fits them. A shard "
        "folder is reported on from sums streamed from its shards, without reading its rows.",
    )
    report.add_argument("frame", type=Path, help="Parquet file or shard folder")
    report.add_argument("--tables", type=Path, help="folder written by `attnmag fit`")
    _add_fit_options(report)
    _add_format_option(report)
    _add_output_options(report, what="report folder", default=None)
    return parser


def _local_inputs(args: argparse.Namespace) -> list[Path]:
    """The input files and folders of a command that exist on disk."""
    given = [*_sources(args), *(getattr(args, n, None) for n in ("dataset", "frame", "tables"))]
    return [Path(path) for path in given if path is not None and Path(path).exists()]


def _sources(args: argparse.Namespace) -> list[str | None]:
    """The models asked for, in order (None: the bundled model)."""
    given = getattr(args, "model", None)
    listed = given if isinstance(given, list) else [given]
    return [None if source in (None, BUNDLED) else source for source in listed]


def model_names(sources: Sequence[str | None]) -> list[str]:
    """The names the models of a run of several get in the frame's ``model`` column.

    Parameters
    ----------
    sources : sequence of str or None
        The ``--model`` values (None: the bundled model).

    Returns
    -------
    list of str
        The bundled model's name, a local file's or folder's name (without ``.gguf``), or
        the hub id; the values as given where two names would be the same.

    Examples
    --------
    >>> model_names([None, "models/gpt2-tiny", "gpt2"])
    ['SmolLM2-135M-Instruct', 'gpt2-tiny', 'gpt2']
    """
    names = [
        BUNDLED_NAME
        if source is None
        else Path(source).name.removesuffix(".gguf")
        if Path(source).exists()
        else source
        for source in sources
    ]
    if len(set(names)) < len(names):
        names = [BUNDLED_NAME if source is None else source for source in sources]
    return names


def _check_frame_path(path: Path) -> None:
    """A frame argument must be a Parquet file or a folder (of shards)."""
    if not path.exists():
        raise AttnmagError(f"frame {path}: no such file or folder (a Parquet file or shard folder)")
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(4) != b"PAR1":
                raise AttnmagError(
                    f"frame {path} is not a Parquet file; give the {FRAME_FILE} of `attnmag run` "
                    "or the folder of `attnmag extract`"
                )


def check_args(args: argparse.Namespace) -> None:
    """Every check that needs no model or data, done before any work.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line; what is wrong is one ``AttnmagError``.
    """
    inputs = _local_inputs(args)
    if args.command in ("run", "extract"):
        if args.heads and args.sites is not None and "attn" not in args.sites:
            raise AttnmagError(
                f"--heads splits the attention update into heads: add attn to --sites "
                f"{','.join(args.sites)}"
            )
        sources = _sources(args)
        repeated = sorted({str(s or BUNDLED) for s in sources if sources.count(s) > 1})
        if repeated:
            raise AttnmagError(f"--model {repeated[0]} is given twice: name each model once")
        missing = [s for s in sources if s and s.endswith(".gguf") and not Path(s).is_file()]
        if missing:
            raise AttnmagError(f"unknown model {missing[0]!r}: no such GGUF file")
    if args.command == "extract":
        from attnmag.extract.shards import RUN_FILE, rank_and_size

        rank_and_size(None, None)
        check_target(args.out, inputs=inputs)
        if args.out.is_dir() and not (args.out / RUN_FILE).is_file() and any(args.out.iterdir()):
            raise AttnmagError(
                f"--out {args.out} holds files but no {RUN_FILE}: it is not a shard folder of "
                "`attnmag extract`; choose a new folder"
            )
        return
    if args.command in ("fit", "report"):
        _check_frame_path(args.frame)
    if getattr(args, "tables", None) is not None and not args.tables.is_dir():
        raise AttnmagError(f"--tables {args.tables} is not a folder (written by `attnmag fit`)")
    check_output(args.out, force=args.force, inputs=inputs)


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _load_corpus(args: argparse.Namespace) -> object:
    """The corpus of ``--dataset``, ``--split``, ``--text-column`` and ``--limit``."""
    from attnmag import extract

    return extract.load_corpus(
        args.dataset, split=args.split, text_column=args.text_column, limit=args.limit or None
    )


def _load_model(args: argparse.Namespace, source: str | None) -> tuple[object, object]:
    """The model ``source`` (None: the bundled one) and its tokenizer, on ``--device``."""
    from attnmag import extract

    return extract.load_model(source, dtype=args.dtype, device=args.device or default_device())


def _load_inputs(args: argparse.Namespace) -> tuple[object, object, object]:
    """Corpus first (cheap, and its errors are common), then the model."""
    texts = _load_corpus(args)
    model, tokenizer = _load_model(args, _sources(args)[0])
    return model, tokenizer, texts


def _measure(args: argparse.Namespace, model: object, tokenizer: object, texts: object):
    """The frame of ``texts``: the attention update, or ``--sites`` (and ``--heads``)."""
    from attnmag import extract

    options = {
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "layers": args.layers,
        "heads": args.heads,
        "progress": False if args.quiet else None,
    }
    if args.sites is None:
        return extract.attention_norms(model, tokenizer, texts, **options)
    return extract.update_norms(model, tokenizer, texts, sites=args.sites, **options)


def _measure_all(args: argparse.Namespace, seconds: dict[str, float]) -> object:
    """Every ``--model`` measured in turn on the same texts; several are combined into one
    frame with a ``model`` column. ``seconds`` gets the load and extract times, summed."""
    from attnmag import extract

    start = time.perf_counter()
    texts = _load_corpus(args)
    seconds["load"] = time.perf_counter() - start
    sources = _sources(args)
    frames = {}
    for name, source in zip(model_names(sources), sources, strict=True):
        start = time.perf_counter()
        if frames:  # the last model's memory is let go before the next one loads
            gc.collect()
        model, tokenizer = _load_model(args, source)
        loaded = time.perf_counter()
        seconds["load"] += loaded - start
        _say(args, f"load {name}: {loaded - start:.1f} s, {len(texts):,} texts")
        frames[name] = _measure(args, model, tokenizer, texts)
        del model, tokenizer
        measured = time.perf_counter() - loaded
        seconds["extract"] = seconds.get("extract", 0.0) + measured
        _say(args, f"extract {name}: {measured:.1f} s, {len(frames[name]):,} rows")
    return next(iter(frames.values())) if len(frames) == 1 else extract.combine(frames)


def default_device() -> str:
    """The device a command runs its model on when ``--device`` is not given.

    Returns
    -------
    str
        ``cuda:LOCAL_RANK`` where a GPU is present (one per process under torchrun), else
        ``cpu``.
    """
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    return "cpu"


def _timed(seconds: dict[str, float], stage: str, work: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = work()
    seconds[stage] = time.perf_counter() - start
    return result


def _fit_options(args: argparse.Namespace) -> dict:
    """The fitting options of ``models.fit_all`` (and ``write_report``) from the command line."""
    return {
        "trend_methods": args.methods,
        "lag_methods": args.lag_methods,
        "max_position": args.max_position,
        "conf_level": args.conf_level,
        "n_jobs": args.n_jobs,
        "progress": False if args.quiet else None,
    }


def command_run(args: argparse.Namespace) -> Path:
    """Extract, fit and report into ``args.out``; return the path of the main report.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed, checked command line.

    Returns
    -------
    Path
        The main report.
    """
    from attnmag import models, reports

    seconds: dict[str, float] = {}
    with replacing(args.out, force=args.force, kind="run") as folder:
        frame = _measure_all(args, seconds)
        frame.to_parquet(folder / FRAME_FILE)
        tables = _timed(seconds, "fit", lambda: models.fit_all(frame, **_fit_options(args)))
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
                conf_level=args.conf_level,
                timings=seconds,
            ),
        )
        _say(args, f"report: {seconds['report']:.1f} s")
    main_file = "index.html" if "html" in args.format else "report.md"
    return args.out / Path(paths[main_file]).relative_to(folder)


def command_extract(args: argparse.Namespace) -> Path:
    """Measure into resumable Parquet shards under ``args.out``; return the folder.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed, checked command line.

    Returns
    -------
    Path
        The shard folder.
    """
    from attnmag.extract.shards import write_shards

    model, tokenizer, texts = _load_inputs(args)
    write_shards(
        model,
        tokenizer,
        texts,
        args.out,
        batch_size=args.batch_size,
        max_length=args.max_length,
        layers=args.layers,
        shard_texts=args.shard_texts,
        progress=False if args.quiet else None,
        sites=args.sites,
        heads=args.heads,
    )
    return args.out


def command_fit(args: argparse.Namespace) -> Path:
    """Fit the frame at ``args.frame``; write the tables as CSV into ``args.out``.

    A shard folder is fitted from sums streamed from its shards, without building the
    frame (``models.fit_all`` on its path); a Parquet file is read as the frame.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed, checked command line.

    Returns
    -------
    Path
        The tables' folder.
    """
    from attnmag import extract, models

    with replacing(args.out, force=args.force, kind="tables") as folder:
        frame = args.frame if args.frame.is_dir() else extract.read_frame(args.frame)
        for name, table in models.fit_all(frame, **_fit_options(args)).items():
            table.to_csv(folder / f"{name}.csv", index=False)
    return args.out


def command_report(args: argparse.Namespace) -> Path:
    """Write the report on ``args.frame`` (tables from ``--tables`` or fitted) into ``args.out``.

    A shard folder is reported on without reading its rows (``reports.write_report`` on its
    path: fits and aggregates streamed from the shards); a Parquet file is read as the frame.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed, checked command line.

    Returns
    -------
    Path
        The main report.
    """
    from attnmag import extract, models, reports

    tables = None if args.tables is None else models.read_fits(args.tables)
    with replacing(args.out, force=args.force, kind="report") as folder:
        frame = args.frame if args.frame.is_dir() else extract.read_frame(args.frame)
        paths = reports.write_report(
            frame, folder, formats=args.format, tables=tables, **_fit_options(args)
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
    """The ``attnmag`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 when done (the output's path printed), 2 for bad input (one
        ``AttnmagError`` line on stderr), 130 when interrupted, 1 for an unexpected error
        (one line, or the traceback with ``--debug``).

    Examples
    --------
    >>> main(["extract", "--limit", "16", "--out", "norms/"])  # doctest: +SKIP
    0
    """
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        check_args(args)
        if args.quiet:
            import transformers

            transformers.logging.disable_progress_bar()
            transformers.logging.set_verbosity_error()
        path = COMMANDS[args.command](args)
    except AttnmagError as error:
        print(f"attnmag: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnmag: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 — one line, not a traceback, unless --debug
        if debug:
            raise
        print(
            f"attnmag: unexpected error: {type(error).__name__}: {error} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    print(path)
    return 0


def console() -> NoReturn:
    """The ``attnmag`` console script (and ``python -m attnmag``): ``main``, its status the
    process's exit status."""
    sys.exit(main())
