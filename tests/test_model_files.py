"""Model files are not code: classical models are skops files loaded with an explicit list of
trusted types, pickles are refused, torch files load with ``weights_only=True``; ``serve``
takes models only from its runs directory and gives every input its own outbox folder."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from pipeline.core.errors import InputError
from pipeline.models import build_model, load_model, registry
from pipeline.models.base import ModelMeta, TrainingData

REPO = Path(__file__).resolve().parents[1]
BANDS = ["a", "b", "c"]


def _data(n: int = 240) -> TrainingData:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3, 3, 3)).astype(np.float32)
    y = 1 + (x[:, 0, 1, 1] > 0) + (x[:, 1, 1, 1] > 0.5)
    return TrainingData(x, y.astype(np.int64), np.arange(n) % 12, np.zeros((n, 2)), BANDS)


def _meta(name: str) -> ModelMeta:
    return ModelMeta(name, BANDS, [1, 2, 3], ["p", "q", "r"], ["#000000", "#777777", "#ffffff"], 3)


@pytest.mark.parametrize("name", ["decision_tree", "random_forest", "svm", "max_likelihood"])
def test_classical_models_round_trip_through_skops(tmp_path, name):
    data = _data()
    settings = registry.get(name).config(**({"n_estimators": 10} if name == "random_forest" else {}))
    model = build_model(name, settings, _meta(name), seed=0).fit(data, data.subset(np.arange(60)))
    path = model.save(tmp_path / f"{name}{registry.model_suffix(name)}")
    assert path.suffix == ".skops" and not path.read_bytes().startswith(b"\x80")  # a zip, not a pickle
    again = load_model(path)
    assert type(again) is type(model) and again.meta == model.meta and again.fit_info == model.fit_info
    a, b = model.predict_patches(data.patches), again.predict_patches(data.patches)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=0)


class _Evil:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("landcover: error: "), proc.stderr
    return lines[0]


def _map(model: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    from conftest import write_raster

    img = write_raster(tmp_path / "img.tif", np.ones((3, 8, 8), np.uint16), descriptions=BANDS)
    return run_cli(
        "map",
        "--model",
        str(model),
        "--raster",
        str(img),
        "--out",
        str(tmp_path / "out.tif"),
        "--no-progress",
        quiet_warnings=True,
    )


@pytest.mark.parametrize("suffix", [".pkl", ".skops", ".pt"])
def test_a_malicious_pickle_is_refused_without_running_it(tmp_path, suffix):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / f"model{suffix}"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    proc = _map(evil, tmp_path)
    line = _one_line(proc)
    assert proc.returncode == 2 and str(evil) in line
    assert "weights_only" not in proc.stderr
    assert not marker.exists(), "loading the model file ran its code"
    assert not (tmp_path / "out.tif").exists()


def test_a_skops_file_with_an_untrusted_type_is_refused(tmp_path):
    import skops.io as sio

    from pipeline.models.classical import SAVE_FORMAT

    marker = tmp_path / "pwned.txt"
    path = tmp_path / "tampered.skops"
    good = build_model("decision_tree", registry.get("decision_tree").config(), _meta("decision_tree"), seed=0)
    good.fit(_data())
    good.save(path)
    blob = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    assert blob["format"] == SAVE_FORMAT
    blob["state"]["extra"] = _Evil(str(marker))  # an object of a type nobody trusted
    sio.dump(blob, path)
    with pytest.raises(InputError, match=r"refused to load: the file holds types that are not trusted \(.*_Evil"):
        load_model(path)
    proc = _map(path, tmp_path)
    assert proc.returncode == 2 and "not trusted" in _one_line(proc)
    assert not marker.exists()


def test_damaged_model_files_are_one_line(tmp_path):
    good = build_model("decision_tree", registry.get("decision_tree").config(), _meta("decision_tree"), seed=0)
    path = good.fit(_data()).save(tmp_path / "m.skops")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    proc = _map(path, tmp_path)
    assert proc.returncode == 2 and "not a saved landcover model" in _one_line(proc)


def test_a_torch_file_holding_objects_is_refused_without_advising_weights_only_false(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "cnn.pt"
    torch.save({"format": "x", "payload": _Evil(str(marker))}, path)
    with pytest.raises(InputError) as exc:
        load_model(path)
    msg = str(exc.value)
    assert str(path) in msg and "refused" in msg and "weights_only" not in msg and "\n" not in msg
    assert not marker.exists()


def test_serve_takes_models_only_from_its_runs_directory(tmp_path):
    from pipeline.runner.promotion import model_in_runs

    runs = tmp_path / "runs"
    (runs / "r1" / "models").mkdir(parents=True)
    inside = runs / "r1" / "models" / "m.skops"
    inside.write_bytes(b"x")
    outside = tmp_path / "elsewhere.skops"
    outside.write_bytes(b"x")
    assert model_in_runs(inside, runs) == inside.resolve()
    with pytest.raises(InputError, match="only from its runs directory"):
        model_in_runs(outside, runs)
    link = runs / "r1" / "models" / "link.skops"
    link.symlink_to(outside)  # a link inside pointing out is refused too
    with pytest.raises(InputError, match="only from its runs directory"):
        model_in_runs(link, runs)
    proc = run_cli(
        "serve",
        str(REPO / "configs" / "demo.yaml"),
        "--once",
        "--raster",
        str(outside),
        "--model",
        str(outside),
        "--runs",
        str(runs),
    )
    assert proc.returncode == 2 and "only from its runs directory" in _one_line(proc)


def test_serve_scene_names_never_share_a_folder(tmp_path):
    from pipeline.runner.batch import scene_name

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = {}
    for stem in ("a b", "a?b", "a_b", "été", "ete", "地图", "地 图"):
        p = inbox / f"{stem}.tif"
        p.write_bytes(stem.encode())
        st = p.stat()
        names[stem] = scene_name(p, f"{p}|{st.st_size}|{st.st_mtime_ns}")
    assert len(set(names.values())) == len(names)
    assert names["été"].startswith("été-") and names["地图"].startswith("地图-") and names["a b"].startswith("a_b-")
    assert all("/" not in n and not n.startswith(".") for n in names.values())
    # across cycles: the same input keeps its folder, a new version of it or another file does not
    p = inbox / "a b.tif"
    st = p.stat()
    assert scene_name(p, f"{p}|{st.st_size}|{st.st_mtime_ns}") == names["a b"]
    p.write_bytes(b"a newer, longer version")
    st = p.stat()
    assert scene_name(p, f"{p}|{st.st_size}|{st.st_mtime_ns}") not in names.values()
