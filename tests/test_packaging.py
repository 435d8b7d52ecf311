"""A regular (non-editable) install gives the same ``attnmag.*`` imports and nothing generic."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_the_three_stages_under_attnmag_only(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(
        [*pip, "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", ROOT],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "BuildBackendWarning" not in built.stdout + built.stderr
    wheel = next((tmp_path / "dist").glob("attnmag-*.whl"))
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    top_level = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")} - {"bin"}
    assert top_level == {"attnmag"}
    assert (site / "attnmag" / "reports" / "templates").is_dir()
    code = (
        "import attnmag, attnmag.extract, attnmag.models, attnmag.reports, attnmag.cli\n"
        "for m in (attnmag, attnmag.extract, attnmag.models, attnmag.reports, attnmag.cli):\n"
        "    print(m.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(site)},
    ).stdout.split()
    assert len(out) == 5 and all(Path(f).is_relative_to(site) for f in out)
