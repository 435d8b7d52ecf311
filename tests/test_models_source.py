"""What the fits read (``models.source``), the tables read back (``models.read_fits``) and
Holm's adjustment."""

import numpy as np
import pandas as pd
import pytest
from simulate import simulated_frame, write_folder
from statsmodels.stats.multitest import multipletests

from attnmag import AttnmagError, models, reports
from attnmag.models import source
from attnmag.models.tidy import holm


def test_a_folder_is_read_once_until_its_shards_change(tmp_path, monkeypatch):
    frame = simulated_frame(30, 2, seed=1)
    folder = write_folder(frame, tmp_path / "norms", shard_texts=10)
    calls = []
    load = source.load_shards
    monkeypatch.setattr(source, "load_shards", lambda *args: calls.append(args) or load(*args))
    first = models.fit_all(folder, trend_methods=["ols"], lag_methods=["ols"], progress=False)
    again = models.position_trend(folder, method="ols").tidy
    reports.write_report(folder, tmp_path / "report", tables=first, progress=False)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first["position_trend"].tidy, again)
    on_frame = models.position_trend(frame, method="ols").tidy
    pd.testing.assert_frame_equal(on_frame, again, rtol=1e-10)
    shard = sorted(folder.glob("shard-*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[:-8])  # damaged: verified again, and refused
    with pytest.raises(AttnmagError, match="checksum|sha256"):
        models.position_trend(folder, method="ols")
    assert len(calls) == 2
    n_others = source.KEPT_FOLDERS + 1
    others = [write_folder(frame, tmp_path / f"other{k}", 10) for k in range(n_others)]
    for other in [*others, others[-1], others[0]]:  # the least recently opened: dropped
        models.position_trend(other, method="ols")
    assert len(calls) == 2 + n_others + 1


def test_a_large_shard_is_read_in_parts_of_whole_texts(tmp_path, monkeypatch):
    frame = simulated_frame(40, 2, seed=2)
    whole = source.open_source(write_folder(frame, tmp_path / "whole", shard_texts=20))
    monkeypatch.setattr(source, "PART_ROWS", len(frame) // 7)
    cut = source.open_source(write_folder(frame, tmp_path / "cut", shard_texts=20))
    assert len(whole.parts()) == 2 and len(cut.parts()) >= 8
    with cut.connected(1) as connection:
        seen = []
        for part in cut.parts():
            cut.part_view(connection, part, "rows")
            seen.append(connection.sql("SELECT sequence, count(*) FROM rows GROUP BY 1").df())
    seen = pd.concat(seen)
    assert seen["sequence"].is_unique and seen.iloc[:, 1].sum() == len(frame)
    for method in ("gmm", "ols"):
        pd.testing.assert_frame_equal(
            models.lag_effects(cut, method=method).tidy,
            models.lag_effects(whole, method=method).tidy,
        )


def test_read_fits_brings_back_what_write_fits_wrote(tmp_path):
    frame = simulated_frame(30, 2, lag1=0.2, seed=2)
    fits = models.fit_all(frame, trend_methods=["ols", "mixed"], lag_methods=["gmm"])
    written = models.write_fits(fits, tmp_path)
    assert set(written) == {"position_trend.csv", "lag_effects.csv", "glance.csv"}
    back = models.read_fits(tmp_path)
    assert set(back) == {"position_trend", "lag_effects"}
    for name in ("position_trend", "lag_effects"):
        assert isinstance(back[name], models.Fits)
        pd.testing.assert_frame_equal(
            back[name].tidy, fits[name].tidy, check_dtype=False, atol=1e-12
        )
        got, expected = models.glance(back[name]), models.glance(fits[name])
        assert got[["fit", "method", "layer"]].equals(expected[["fit", "method", "layer"]])
        np.testing.assert_allclose(got["loglik"], expected["loglik"], rtol=1e-12)
    with pytest.raises(KeyError, match="read back from their tables"):
        back["position_trend"].results[0]
    (tmp_path / "glance.csv").unlink()
    bare = models.read_fits(tmp_path)["lag_effects"]
    assert bare.glance.empty and len(bare.tidy) == len(fits["lag_effects"].tidy)
    with pytest.raises(AttnmagError, match="^these fits carry no glance rows"):
        models.glance(bare)
    (tmp_path / "lag_effects.csv").unlink()
    with pytest.raises(AttnmagError, match="lacks lag_effects.csv"):
        models.read_fits(tmp_path)


def test_holm_equals_statsmodels():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 30):
        p_values = rng.random(n) ** 3
        p_values[0] = p_values[-1]  # a tie
        expected = multipletests(p_values, method="holm")[1]
        np.testing.assert_allclose(holm(p_values), expected, rtol=0, atol=1e-15)
