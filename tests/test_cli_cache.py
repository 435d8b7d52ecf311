"""The converted-model cache: keyed by the GGUF's content, one conversion shared by copies and
processes (under a lock), and ``attnmag cache list|clear`` that deletes only its entries."""

import json
import shutil
import threading
import time

import pytest

from attnmag import cache
from attnmag.cli import main
from attnmag.extract import sources


@pytest.fixture
def root(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(cache, "cache_dir", lambda: folder)
    monkeypatch.setattr(sources, "cache_dir", lambda: folder)
    return folder


@pytest.fixture
def conversions(monkeypatch):
    """``_convert_gguf`` replaced by a slow fake that records its calls and marks the folder."""
    calls = []

    def convert(gguf, folder):
        calls.append(gguf)
        time.sleep(0.2)  # long enough for a second caller to arrive while this one holds
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"x" * 2048)
        (folder / cache.COMPLETE).write_text(json.dumps({"gguf": str(gguf)}))

    monkeypatch.setattr(sources, "_convert_gguf", convert)
    return calls


def test_the_entry_is_named_for_the_files_content(tmp_path):
    first, copy, other = (tmp_path / n / "m.gguf" for n in ("a", "b", "c"))
    for path, content in ((first, b"GGUF one"), (copy, b"GGUF one"), (other, b"GGUF two")):
        path.parent.mkdir()
        path.write_bytes(content)
    assert cache.entry(first, tmp_path) == cache.entry(copy, tmp_path)
    assert cache.entry(first, tmp_path) != cache.entry(other, tmp_path)
    assert cache.entry(first, tmp_path).parent == tmp_path / "models"
    assert cache.entry(first, tmp_path).name.startswith("m-")


def test_copies_and_concurrent_callers_share_one_conversion(root, conversions, tmp_path):
    copies = []
    for name in ("clone1", "clone2", "clone3"):
        (tmp_path / name).mkdir()
        copies.append(tmp_path / name / "model.gguf")
        copies[-1].write_bytes(b"the same GGUF bytes")
    folders = []
    threads = [
        threading.Thread(target=lambda p=p: folders.append(sources.gguf_folder(p)))
        for p in copies[:2]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    folders.append(sources.gguf_folder(copies[2]))
    assert len(conversions) == 1 and len(set(folders)) == 1
    assert sources.gguf_folder(copies[0], rebuild=True) == folders[0] and len(conversions) == 2


def test_list_and_clear_touch_only_attnmags_entries(root, conversions, tmp_path, capsys):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    folder = sources.gguf_folder(gguf)
    foreign = root / "models" / "someone-elses"
    foreign.mkdir()
    (foreign / "keep.bin").write_bytes(b"not attnmag's")
    (root / "notes.txt").write_text("not attnmag's")

    (listed,) = cache.entries()
    assert (listed.folder, listed.source) == (folder, str(gguf)) and listed.size > 2048
    assert main(["cache", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split("\t")[0] == str(folder) and str(gguf) in captured.out
    assert captured.err == f"1 converted models, 0 MiB in {root / 'models'}\n"

    assert main(["--quiet", "cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith(f"{folder}\t")
    assert not folder.exists() and not folder.with_name(folder.name + ".lock").exists()
    assert (foreign / "keep.bin").read_bytes() == b"not attnmag's"
    assert (root / "notes.txt").read_text() == "not attnmag's"
    assert cache.entries() == []
