"""Progress and silence: importing prints nothing, in a terminal or in a notebook that lacks
ipywidgets; extraction shows text progress in one notebook output in such a notebook;
progress=False silences it."""

import subprocess
import sys
import types

import pytest

from attnmag import extract

TEXTS = ["A first text.", "A second, somewhat longer text."]

# What tqdm.auto sees inside a Jupyter kernel whose environment has no ipywidgets.
FAKE_NOTEBOOK = """
import sys, types
shell = type("ZMQInteractiveShell", (), {})()
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: shell
sys.modules.update({
    "IPython": ipython,
    "ipykernel": types.ModuleType("ipykernel"),
    "ipykernel.zmqshell": types.ModuleType("ipykernel.zmqshell"),
    "ipywidgets": None,
})
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )


def test_the_fake_notebook_is_one_where_tqdm_auto_warns():
    assert "IProgress not found" in run_python(FAKE_NOTEBOOK + "import tqdm.auto").stderr


@pytest.mark.parametrize("setting", ["", FAKE_NOTEBOOK], ids=["terminal", "notebook"])
def test_importing_the_extract_stage_prints_nothing(setting):
    done = run_python(setting + "import attnmag.extract, attnmag.extract.norms")
    assert (done.stdout, done.stderr) == ("", "")


@pytest.fixture
def notebook_without_ipywidgets(monkeypatch) -> list[tuple[str, str]]:
    """A fake kernel without ipywidgets; returns the display calls, ``(kind, text)``, that
    ``IPython.display`` receives (``display`` makes an output, ``update`` replaces it)."""
    calls = []
    shell = type("ZMQInteractiveShell", (), {})()
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell
    display = types.ModuleType("IPython.display")

    class Handle:
        def update(self, data, raw):
            calls.append(("update", data["text/plain"]))

    def show(data, raw, display_id):
        calls.append(("display", data["text/plain"]))
        return Handle()

    display.display = show
    for name, module in {
        "IPython": ipython,
        "IPython.display": display,
        "ipykernel": types.ModuleType("ipykernel"),
        "ipykernel.zmqshell": types.ModuleType("ipykernel.zmqshell"),
        "ipywidgets": None,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_a_notebook_without_ipywidgets_shows_text_progress_in_one_output(
    notebook_without_ipywidgets, tiny_gpt2, gpt2_tokenizer, capsys
):
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS)
    assert capsys.readouterr() == ("", "")
    kinds = [kind for kind, _ in notebook_without_ipywidgets]
    assert kinds[0] == "display" and set(kinds[1:]) == {"update"} and len(kinds) > 1
    texts = [text for _, text in notebook_without_ipywidgets]
    assert texts[0].startswith("attention norms") and "tok" in texts[0]
    notebook_without_ipywidgets.clear()
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=False)
    assert capsys.readouterr() == ("", "") and notebook_without_ipywidgets == []


def test_a_terminal_shows_progress_only_when_asked(tiny_gpt2, gpt2_tokenizer, capsys):
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS)  # stderr is not a TTY here
    assert capsys.readouterr() == ("", "")
    extract.attention_norms(tiny_gpt2, gpt2_tokenizer, TEXTS, progress=True)
    assert "attention norms" in capsys.readouterr().err
