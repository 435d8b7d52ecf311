"""``--quiet`` and runs without a terminal hide transformers' bars: loading weights and the
GGUF conversion (which transformers draws with ``tqdm.auto`` whatever its own settings)."""

import sys

import pytest
import transformers.modeling_gguf_pytorch_utils as gguf_loading
from transformers.utils import logging as transformers_logging

from attnmag import extract
from attnmag.extract import sources


@pytest.mark.parametrize("progress", [None, False, True])
def test_loading_weights_bar_shows_only_where_asked(progress, tiny_model_dir, capfd):
    extract.load_model(str(tiny_model_dir), progress=progress)
    shown = "Loading weights" in capfd.readouterr().err
    assert shown == bool(progress)  # stderr is no terminal here: None hides it
    assert transformers_logging.is_progress_bar_enabled()


@pytest.mark.parametrize("progress", [None, False, True])
def test_the_gguf_conversion_bar_shows_only_where_asked(progress, capfd):
    converting = gguf_loading.tqdm
    with sources._library_bars(progress):
        for _ in gguf_loading.tqdm(range(3), desc="Converting", file=sys.stderr):
            pass
    assert ("Converting" in capfd.readouterr().err) == bool(progress)
    assert gguf_loading.tqdm is converting
