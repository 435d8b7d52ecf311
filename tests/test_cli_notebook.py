"""In a notebook, a progress bar is one output updated in place, with or without ipywidgets.

Executed headless by nbclient, which saves every output a cell makes: a text bar on stderr
would be saved once per refresh."""

import nbformat
import pytest
from nbclient import NotebookClient

LOOP = (
    "import time\n"
    "from attnmag.progress import progress_bar\n"
    "with progress_bar(None, total=40, unit='step', desc='loop') as bar:\n"
    "    for _ in range(40):\n"
    "        time.sleep(0.02)  # several of tqdm's 0.1 s refreshes\n"
    "        bar.update(1)\n"
    "print('done')"
)


@pytest.mark.parametrize("widgets", [True, False])
def test_a_progress_loop_is_one_output(widgets):
    hide = "" if widgets else "import sys\nsys.modules['ipywidgets'] = None  # not installed\n"
    cells = [nbformat.v4.new_code_cell(hide + "import attnmag.extract"), LOOP]
    notebook = nbformat.v4.new_notebook(cells=[cells[0], nbformat.v4.new_code_cell(cells[1])])
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = notebook.cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data", "stream"], outputs
    assert outputs[1].text == "done\n"
    data = outputs[0].data
    if widgets:
        assert "application/vnd.jupyter.widget-view+json" in data
    else:
        assert set(data) == {"text/plain"} and data["text/plain"].startswith("loop: 100%")
        assert "40/40" in data["text/plain"]
