"""The API reference (docs/api.rst) documents every public name of each stage."""

from pathlib import Path

import pytest

from attnmag import extract, models, reports

API = (Path(__file__).parents[1] / "docs" / "api.rst").read_text()


@pytest.mark.parametrize("stage", [extract, models, reports], ids=lambda m: m.__name__)
def test_every_public_name_of_a_stage_is_in_the_api_reference(stage) -> None:
    # automodule documents the functions and classes of __all__; data needs autodata.
    assert f".. automodule:: {stage.__name__}\n" in API
    for name in stage.__all__:
        value = getattr(stage, name)
        if not (callable(value) or isinstance(value, type)):
            assert f".. autodata:: {stage.__name__}.{name}\n" in API, name


def test_the_package_root_is_in_the_api_reference() -> None:
    assert ".. autoexception:: attnmag.AttnmagError\n" in API
    assert ".. data:: attnmag.__version__\n" in API
