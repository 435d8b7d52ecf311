"""The five-line notebook workflow, executed headless with nbclient as a user's notebook.

The notebook loads the tiny model from a folder, measures a labelled corpus with
``keep=["label"]``, fits a formula with that covariate, and ends a cell with a figure:
the cell's outputs must hold a PNG (no ``%matplotlib inline``), and importing attnmag
must print nothing.
"""

import base64
import json

import nbformat
import pytest
from nbclient import NotebookClient

CELLS = [
    "from attnmag import extract, models, reports",
    "import datasets\n"
    "model, tokenizer = extract.load_model({model!r})\n"
    "texts = datasets.Dataset.from_dict({{'text': {texts!r}, 'label': {labels!r}}})",
    "frame = extract.attention_norms(model, tokenizer, texts, keep=['label'], progress=False)\n"
    "fits = models.fit(frame, 'log_norm ~ position + C(label)')\n"
    "print(json.dumps(sorted(set(fits.tidy.term))))",
    "reports.plot_layer_norms(frame)",
]
TEXTS = [f"review {i} says the film was {'good' if i % 2 else 'bad'} indeed" for i in range(12)]


@pytest.fixture(scope="module")
def executed(tiny_model_dir) -> nbformat.NotebookNode:
    labels = ["fresh" if i % 2 else "rotten" for i in range(len(TEXTS))]
    sources = [
        CELLS[0] + "\nimport json",
        CELLS[1].format(model=str(tiny_model_dir), texts=TEXTS, labels=labels),
        *CELLS[2:],
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    return notebook


def test_importing_attnmag_prints_nothing(executed):
    assert executed.cells[0].outputs == []


def test_a_formula_with_the_kept_label_is_fitted(executed):
    printed = [o for o in executed.cells[2].outputs if o.output_type == "stream"]
    assert [o.name for o in printed] == ["stdout"]
    assert json.loads(printed[0].text) == ["C(label)[T.rotten]", "Intercept", "position"]


def test_a_figure_as_the_cells_last_value_is_drawn_inline(executed):
    (result,) = [o for o in executed.cells[3].outputs if o.output_type == "execute_result"]
    png = base64.b64decode(result.data["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
