"""The ``attnmag`` command line: ``run`` does every stage; ``extract``, ``fit``, ``report``
one each; ``cache`` lists and clears the converted-model cache.

Holds ``main`` (the command line as a function), ``console`` (the console script),
``build_parser`` and one small function per sub-command, with the option parsers they
share. Parsing imports neither stage nor torch, transformers, statsmodels or matplotlib,
so ``--help``, ``--version`` and mistakes answer at once; the stages are imported by the
sub-command that runs. Every option is checked before any work
(bad input is one line on stderr and exit status 2, never a traceback, with a "did you
mean" where a known name is close); outputs are written beside their final name and
swapped in complete (see ``attnmag.outputs``).

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
import errno
import gc
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

from attnmag import __version__
from attnmag.errors import AttnmagError
from attnmag.outputs import check_output, check_target, replacing
from attnmag.suggest import did_you_mean

__all__ = ["build_parser", "console", "main", "parse_layers"]

FRAME_FILE = "norms.parquet"
#: The stages ``run`` imports in the background while the model measures.
LATER = ("attnmag.models", "attnmag.reports")
#: The shard folder's record (``attnmag.extract.shards.RUN_FILE``).
RUN_FILE = "run.json"
#: The options' choices and defaults as the stages define them (``attnmag.extract.sites``,
#: ``attnmag.extract.tokens``, ``attnmag.models``), held here so that parsing imports neither stage.
SITES = ("attn", "mlp", "resid")
TOKEN_COLUMNS = ("surprisal", "log_frequency", "word_start", "punct")
TREND_METHODS = ("aggregate", "ols", "mixed")
LAG_METHODS = ("ols", "initial_conditions", "gmm")
MAX_POSITION = 30
CONF_LEVEL = 0.95
#: The ``--model`` value naming the bundled model, and that model's name in a combined frame.
BUNDLED = "bundled"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
FORMATS = ("html", "md")
#: The largest layer index ``--layers`` takes (far beyond any model's depth; a bound keeps a
#: range such as 0-99999999999 from building a list that fills the memory).
MAX_LAYER = 99_999
USAGE_HINT = (
    "attnmag: choose a command: `attnmag run` measures, fits and reports on the bundled "
    "model and corpus; `attnmag --help` lists the commands, `attnmag COMMAND --help` their "
    "options"
)
DESCRIPTION = (
    "Measure how strongly each attention sub-layer of a causal language model adjusts the "
    "residual stream, token by token, fit statistical models to those magnitudes, and "
    "write the tables and an HTML/Markdown report."
)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are ``AttnmagError`` (one line, exit status 2), with
    the closest known option or choice suggested.

    Examples
    --------
    >>> parser = Parser(prog="attnmag")
    >>> _ = parser.add_argument("--batch-size")
    >>> parser.parse_args(["--batchsize", "8"])
    Traceback (most recent call last):
    attnmag.errors.AttnmagError: unrecognized arguments: --batchsize 8; did you mean --batch-size?
    """

    #: The sub-commands' parsers by name (set by ``build_parser``).
    commands: dict[str, argparse.ArgumentParser]

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise the message instead of printing the usage and exiting."""
        raise AttnmagError(message)

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse, suggesting the closest option of the sub-command for an unknown one."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            parsers = [self, getattr(self, "commands", {}).get(command)]
            options = [o for p in parsers if p for a in p._actions for o in a.option_strings]
            typed = next((e for e in extras if e.startswith("-")), extras[0]).partition("=")[0]
            self.error(f"unrecognized arguments: {' '.join(extras)}{did_you_mean(typed, options)}")
        return parsed

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """argparse's check of ``choices`` (sub-commands, ``--dtype``), with a suggestion."""
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(
                action,
                f"invalid choice: {value!r} (choose from {choices})"
                f"{did_you_mean(str(value), action.choices)}",
            )


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
            if first < 0 or last < first or last > MAX_LAYER:
                raise ValueError
            layers.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be layer indices (0 to {MAX_LAYER}) and ascending ranges such as 0,2,5-7, "
            f"not {text!r}"
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
                + (did_you_mean(unknown[0], allowed) if unknown else "")
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
    parser.add_argument(
        "--token-columns",
        type=parse_choices(TOKEN_COLUMNS),
        default=[],
        help=f"token-level columns to add, comma-separated from {','.join(TOKEN_COLUMNS)} "
        "(surprisal runs the forward pass to its end, through the LM head)",
    )
    parser.add_argument(
        "--sink",
        action="store_true",
        help="add the first token's share of each attention update: sink_weight (its "
        "attention weight, mean over heads) and sink_norm (the norm of its part)",
    )


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    trend, lags = TREND_METHODS, LAG_METHODS
    parser.add_argument(
        "--max-position",
        type=positive_int,
        default=MAX_POSITION,
        help=f"last position of the position-trend fits (default: {MAX_POSITION})",
    )
    parser.add_argument(
        "--first-position",
        type=non_negative_int,
        default=1,
        help="first position every fit and mean uses (default: 1, leaving out position 0, "
        "the attention sink; 0 keeps it)",
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
    parser.add_argument("--version", action="version", version=f"attnmag {__version__}")
    _add_common_options(parser, default=False)
    common = Parser(add_help=False)
    _add_common_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = commands.choices

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

    cache = command(
        "cache",
        "list or clear the converted-model cache",
        "GGUF models are converted once into safetensors folders, keyed by the GGUF file's "
        "sha256 and shared by every copy of the file. `clear` deletes only those folders.",
    )
    cache.add_argument("action", choices=("list", "clear"), help="list or clear")
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
    >>> _ = Path("gpt2-tiny.gguf").write_bytes(b"GGUF")
    >>> model_names([None, "gpt2-tiny.gguf", "gpt2"])
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
    """A frame argument must be a Parquet file or a shard folder whose ``run.json`` passes
    its schema; the folder of ``attnmag run`` gets its frame file suggested."""
    if not path.exists():
        raise AttnmagError(f"frame {path}: no such file or folder (a Parquet file or shard folder)")
    if path.is_dir():
        if not (path / RUN_FILE).is_file() and (path / FRAME_FILE).is_file():
            raise AttnmagError(
                f"frame {path} is the folder of `attnmag run`, not a shard folder of `attnmag "
                f"extract`; did you mean {path / FRAME_FILE}?"
            )
        from attnmag.extract.shards import read_manifest

        read_manifest(path)
    if path.is_file():
        with path.open("rb") as handle:
            if handle.read(4) != b"PAR1":
                raise AttnmagError(
                    f"frame {path} is not a Parquet file; give the {FRAME_FILE} of `attnmag run` "
                    "or the folder of `attnmag extract`"
                )


def bundled_hint(source: str) -> str:
    """``"; did you mean --model bundled (…)?"`` where ``source`` looks like a name of the
    bundled model (``smollm2``, ``bundeld``), else ``""``.

    Examples
    --------
    >>> bundled_hint("smollm2")
    '; did you mean --model bundled (SmolLM2-135M-Instruct)?'
    >>> bundled_hint("gpt2-large")
    ''
    """
    plain = source.lower().replace("-", "").replace("_", "")
    if "smollm" in plain or did_you_mean(source, [BUNDLED]):
        return f"; did you mean --model {BUNDLED} ({BUNDLED_NAME})?"
    return ""


def _check_offline_model(source: str | None) -> None:
    """In offline mode (``HF_HUB_OFFLINE``), a hub id must be in the local hub cache."""
    if source is None or Path(source).exists() or source.endswith(".gguf"):
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return
    try:
        cached = try_to_load_from_cache(source, "config.json")
    except ValueError:  # a malformed hub id
        cached = None
    if not isinstance(cached, str):
        raise AttnmagError(
            f"unknown model {source!r}: not a local model folder or .gguf file, and not in the "
            f"local hub cache (HF_HUB_OFFLINE is set){bundled_hint(source)}"
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
            raise AttnmagError(
                f"unknown model {missing[0]!r}: no such GGUF file{bundled_hint(missing[0])}"
            )
        for source in sources:
            _check_offline_model(source)
    if args.command == "cache":
        return
    if getattr(args, "first_position", 0) >= getattr(args, "max_position", 1):
        raise AttnmagError(
            f"--first-position {args.first_position} must be below --max-position "
            f"{args.max_position}"
        )
    if args.command == "extract":
        from attnmag.extract.shards import check_claimable, rank_and_size

        rank_and_size(None, None)
        check_target(args.out, inputs=inputs)
        check_claimable(args.out, f"--out {args.out}")
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
    """The model ``source`` (None: the bundled one) and its tokenizer, on ``--device``; an
    unknown name that looks like the bundled model's suggests ``--model bundled``. With
    ``--quiet``, transformers' warnings are silenced too."""
    from attnmag import extract

    if args.quiet:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
    try:
        return extract.load_model(
            source,
            dtype=args.dtype,
            device=args.device or default_device(),
            progress=False if args.quiet else None,
        )
    except AttnmagError as error:
        hint = bundled_hint(source) if source and str(error).startswith("unknown model") else ""
        if hint:
            raise AttnmagError(f"{error}{hint}") from None
        raise


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
        "token_columns": args.token_columns,
        "sink": args.sink,
        "progress": False if args.quiet else None,
    }
    if args.sites is None:
        return extract.attention_norms(model, tokenizer, texts, **options)
    return extract.update_norms(model, tokenizer, texts, sites=args.sites, **options)


def _measure_all(
    args: argparse.Namespace, seconds: dict[str, float], *, loaded: Callable[[], object]
) -> object:
    """Every ``--model`` measured in turn on the same texts; several are combined into one
    frame with a ``model`` column. ``seconds`` gets the load and extract times, summed;
    ``loaded()`` is called once the first model is loaded, before it measures."""
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
        ready = time.perf_counter()
        seconds["load"] += ready - start
        _say(args, f"load {name}: {ready - start:.1f} s, {len(texts):,} texts")
        if not frames:
            loaded()
        frames[name] = _measure(args, model, tokenizer, texts)
        del model, tokenizer
        measured = time.perf_counter() - ready
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


def _import_all(names: Sequence[str]) -> None:
    """Import the modules ``names`` (whole stages, each with its libraries), in order.

    ``run`` does this in a background thread while the model measures, whose forward pass
    runs in torch without the GIL, rather than after it: the fits' and the report's libraries
    (statsmodels, scipy, matplotlib, seaborn). It starts once the model is loaded, when the
    extraction has imported all it needs, so the two threads do not import the same modules;
    a failed import is raised in the main thread when it waits for this one.
    """
    for name in names:
        importlib.import_module(name)


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
        "first_position": args.first_position,
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
    from attnmag.extract.frame_file import write_frame

    seconds: dict[str, float] = {}
    with (
        replacing(args.out, force=args.force, kind="run") as folder,
        ThreadPoolExecutor(1, thread_name_prefix="attnmag-run") as background,
    ):
        importing: list[Future] = []
        frame = _measure_all(
            args, seconds, loaded=lambda: importing.append(background.submit(_import_all, LATER))
        )
        for imported in importing:
            imported.result()
        from attnmag import models, reports

        # The frame is written while the fits and the report work (pyarrow's writer runs
        # without the GIL); it is waited for before the folder is marked and swapped in.
        saving = background.submit(write_frame, frame, folder / FRAME_FILE)
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
                first_position=args.first_position,
                conf_level=args.conf_level,
                timings=seconds,
            ),
        )
        _say(args, f"report: {seconds['report']:.1f} s")
        saving.result()
    written = {name: args.out / Path(path).relative_to(folder) for name, path in paths.items()}
    _say_written(args, {**written, FRAME_FILE: args.out / FRAME_FILE})
    return written["index.html" if "html" in args.format else "report.md"]


def _say_written(args: argparse.Namespace, written: dict[str, Path]) -> None:
    """The stage lines' last: the report files, the frame and the tables, where written."""
    groups = {
        "report": [n for n in ("index.html", "report.md") if n in written],
        "frame": [n for n in written if n == FRAME_FILE],
        "tables": [n for n in written if n.endswith(".csv")],
    }
    for label, names in groups.items():
        if names:
            _say(args, f"{label}: {', '.join(str(written[n]) for n in names)}")


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
        token_columns=args.token_columns,
        sink=args.sink,
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
    from attnmag import models

    seconds: dict[str, float] = {}
    with replacing(args.out, force=args.force, kind="tables") as folder:
        frame = _read_frame(args, seconds)
        fits = _timed(seconds, "fit", lambda: models.fit_all(frame, **_fit_options(args)))
        _say(args, f"fit: {seconds['fit']:.1f} s")
        written = models.write_fits(fits, folder)
    _say_written(args, {name: args.out / name for name in written})
    return args.out


def _read_frame(args: argparse.Namespace, seconds: dict[str, float]) -> object:
    """``args.frame``: a shard folder as its path (fits stream it), a Parquet file read, with
    its stage line."""
    from attnmag import extract

    if args.frame.is_dir():
        return args.frame
    frame = _timed(seconds, "load", lambda: extract.read_frame(args.frame))
    _say(args, f"read {args.frame}: {seconds['load']:.1f} s, {len(frame):,} rows")
    return frame


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
    from attnmag import models, reports

    tables = None
    if args.tables is not None:
        try:
            tables = models.read_fits(args.tables)
        except AttnmagError as error:
            raise AttnmagError(f"--tables: {error}") from None
    seconds: dict[str, float] = {}
    with replacing(args.out, force=args.force, kind="report") as folder:
        frame = _read_frame(args, seconds)
        paths = _timed(
            seconds,
            "report",
            lambda: reports.write_report(
                frame, folder, formats=args.format, tables=tables, **_fit_options(args)
            ),
        )
        _say(args, f"report: {seconds['report']:.1f} s")
    written = {name: args.out / Path(path).relative_to(folder) for name, path in paths.items()}
    _say_written(args, written)
    return written["index.html" if "html" in args.format else "report.md"]


def command_cache(args: argparse.Namespace) -> None:
    """List the converted-model cache's entries, or delete them (``attnmag.cache``).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``args.action``: ``list`` or ``clear``).
    """
    from attnmag import cache

    found = cache.entries() if args.action == "list" else cache.clear()
    for item in found:
        print(f"{item.folder}\t{item.size / 2**20:,.0f} MiB\t{item.source}")
    total = f"{len(found)} converted models, {sum(i.size for i in found) / 2**20:,.0f} MiB"
    where = cache.cache_dir() / cache.MODELS
    _say(args, f"{total} in {where}" if args.action == "list" else f"deleted {total} from {where}")


COMMANDS = {
    "run": command_run,
    "extract": command_extract,
    "fit": command_fit,
    "report": command_report,
    "cache": command_cache,
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
        The exit status: 0 when done (the output's path printed) and after ``--help`` or
        ``--version``, 2 for bad input (one ``AttnmagError`` line on stderr; a full disk too)
        or no command (the usage and a hint), 130 when interrupted, 1 for an unexpected error
        (one line, or the traceback with ``--debug``).

    Examples
    --------
    >>> main(["fit", str(shards), "--out", "tables", "--methods", "ols", "--lag-methods", "ols"])
    tables
    0
    """
    debug = False
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help and --version print, then exit
            return int(done.code or 0)
        if args.command is None:
            print(parser.format_usage() + USAGE_HINT, file=sys.stderr)
            return 2
        debug = args.debug
        check_args(args)
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
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            print(
                f"attnmag: error: no space left on the device ({error.filename or 'writing'}); "
                "nothing finished was lost: free some space and rerun the same command",
                file=sys.stderr,
            )
            return 2
        print(
            f"attnmag: unexpected error: {type(error).__name__}: {error} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    if path is not None:
        print(path)
    return 0


def console() -> NoReturn:
    """The ``attnmag`` console script (and ``python -m attnmag``): ``main``, its status the
    process's exit status."""
    sys.exit(main())
