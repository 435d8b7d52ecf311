"""The files ``benchmarks/gpu.sh`` needs on a GPU machine that has no network, no bundled
model and no bundled corpus: one folder, small enough to travel with the working tree.

Holds:
- ``WHEELS``: the distributions attnmag imports that such a machine lacks;
- ``copy_model_files``: SmolLM2's config and tokenizer files (no weights) -> ``DIR/smollm2``;
- ``copy_gpt2_tokenizer``: the GPT-2 tokenizer's files -> ``DIR/gpt2-tokenizer``;
- ``write_texts``: the bundled snippets (text and label) -> ``DIR/texts.json``;
- ``download_wheels``: ``WHEELS`` at this environment's versions, for CPython 3.12 on
  x86-64 Linux, and a wheel of attnmag itself -> ``DIR/whl``;
- ``mib``: the size of a file or folder in MiB.

``benchmarks/gpu.py --assets DIR`` reads the folder: SmolLM2 is built from its config with
seeded random weights there (its shape is what sets the speed), and the texts are drawn
from ``texts.json`` exactly as ``extract.load_corpus`` draws them.

Usage::

    python -m benchmarks.gpu_assets .gpu                       # writes .gpu/, prints its size
    python -m benchmarks.gpu_assets .gpu --python-version 3.11 # wheels for another Python
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

#: Distributions attnmag imports (``datasets`` with the dependencies that are not
#: transformers' or huggingface_hub's; ``platformdirs``) that the GPU machine lacks.
WHEELS = ("datasets", "dill", "multiprocess", "xxhash", "platformdirs")
#: What ``copy_model_files`` leaves out of SmolLM2's converted folder: the weights, and the marker
#: that makes it a complete cache entry.
NOT_COPIED = ("model.safetensors", "attnmag-complete.json")
ROOT = Path(__file__).resolve().parents[1]


def copy_model_files(folder: Path) -> Path:
    """Copy the bundled SmolLM2's config and tokenizer files, without its weights.

    Parameters
    ----------
    folder : Path
        The assets folder; the files go to ``folder / "smollm2"``.

    Returns
    -------
    Path
        The folder written.

    Examples
    --------
    >>> copy_model_files(Path(".gpu"))  # doctest: +SKIP
    """
    from attnmag.extract.sources import bundled_gguf, gguf_folder

    source, target = gguf_folder(bundled_gguf()), folder / "smollm2"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in NOT_COPIED:
            shutil.copy(path, target / path.name)
    return target


def copy_gpt2_tokenizer(folder: Path) -> Path:
    """Save the GPT-2 tokenizer the benchmarks use to ``folder / "gpt2-tokenizer"``.

    Parameters
    ----------
    folder : Path
        The assets folder.

    Returns
    -------
    Path
        The folder written.

    Examples
    --------
    >>> copy_gpt2_tokenizer(Path(".gpu"))  # doctest: +SKIP
    """
    from benchmarks.common import gpt2_tokenizer

    target = folder / "gpt2-tokenizer"
    gpt2_tokenizer().save_pretrained(target)
    return target


def write_texts(folder: Path) -> Path:
    """Write every bundled snippet, with its label, to ``folder / "texts.json"``.

    Parameters
    ----------
    folder : Path
        The assets folder.

    Returns
    -------
    Path
        The file written: ``{"text": [...], "label": [...]}`` in the corpus's order.

    Examples
    --------
    >>> write_texts(Path(".gpu"))  # doctest: +SKIP
    """
    from attnmag.extract.corpus import bundled_snippets

    snippets = bundled_snippets()
    path = folder / "texts.json"
    columns = {"text": snippets["text"].tolist(), "label": snippets["label"].tolist()}
    path.write_text(json.dumps(columns))
    return path


def download_wheels(folder: Path, python_version: str) -> list[Path]:
    """Download ``WHEELS`` at this environment's versions (binary wheels for CPython
    ``python_version`` on x86-64 Linux, no dependencies) and build attnmag's wheel.

    Parameters
    ----------
    folder : Path
        The assets folder; the wheels go to ``folder / "whl"``.
    python_version : str
        The target machine's Python, e.g. ``"3.12"``.

    Returns
    -------
    list of Path
        The wheels in ``folder / "whl"``.

    Examples
    --------
    >>> download_wheels(Path(".gpu"), "3.12")  # doctest: +SKIP
    """
    target = folder / "whl"
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]
    subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version"]
        + [python_version, "--implementation", "cp", *platforms, "-d", str(target), *pins],
        check=True,
    )
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(target), str(ROOT)], check=True)
    return sorted(target.glob("*.whl"))


def mib(path: Path) -> float:
    """The size of a file, or of the files under a folder, in MiB."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2**20


def main(argv: list[str] | None = None) -> int:
    """Write the assets folder named on the command line and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the assets folder, e.g. .gpu")
    parser.add_argument(
        "--python-version", default="3.12", help="the GPU machine's Python (default 3.12)"
    )
    args = parser.parse_args(argv)
    if any((args.folder / "whl").glob("*.whl")):
        parser.error(f"{args.folder / 'whl'} already holds wheels: remove it, or name a new folder")
    args.folder.mkdir(parents=True, exist_ok=True)
    written = [copy_model_files(args.folder), copy_gpt2_tokenizer(args.folder)]
    written += [write_texts(args.folder), *download_wheels(args.folder, args.python_version)]
    for path in written:
        print(f"  {path.relative_to(args.folder)}: {mib(path):.1f} MiB")
    print(f"{args.folder}: {mib(args.folder):.1f} MiB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
