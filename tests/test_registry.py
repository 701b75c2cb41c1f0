"""The model registry is the one place a model is declared: a toy model registered in a test
(and nowhere else) is accepted by the config, trained, saved, loaded and mapped end to end."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import rasterio
from conftest import write_raster
from pydantic import BaseModel, ConfigDict, Field

from pipeline.config import RunConfig, parse_config
from pipeline.core.errors import InputError
from pipeline.models import build_model, load_model, registry
from pipeline.models.classical import SklearnPixelModel
from pipeline.sampling.settings import FeatureConfig


class ToyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    smoothing: float = Field(default=1e-9, gt=0)
    features: FeatureConfig = FeatureConfig()


class ToyModel(SklearnPixelModel):
    """Gaussian naive Bayes on the band values: a model the pipeline has never heard of."""

    name: ClassVar[str] = "toy"

    def _make_estimator(self):
        from sklearn.naive_bayes import GaussianNB

        return GaussianNB(var_smoothing=self.settings.smoothing)


TOY = registry.ModelSpec("toy", ToyConfig, ToyModel, suffix=".skops", kind="pixel")


@pytest.fixture
def toy():
    with registry.registered(TOY) as spec:
        yield spec
    assert "toy" not in registry.model_names()


def _scene(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    rows, cols = 48, 64
    cls = np.where(np.arange(cols)[None, :] < cols // 2, 1, 2) * np.ones((rows, 1), dtype=np.uint8)
    data = np.stack([1000 + 900 * (cls == b % 2 + 1) + rng.integers(0, 200, cls.shape) for b in range(3)])
    img = write_raster(tmp_path / "img.tif", data.astype(np.uint16), descriptions=["b1", "b2", "b3"])
    lab = np.where(rng.random(cls.shape) < 0.3, cls, 0).astype(np.uint8)
    labels = write_raster(tmp_path / "labels.tif", lab, nodata=0)
    return img, labels


def _raw(img: Path, labels: Path, models: dict) -> dict:
    return {
        "name": "toy",
        "rasters": {"paths": [str(img)]},
        "labels": {"path": str(labels)},
        "classes": [{"id": 1, "name": "west"}, {"id": 2, "name": "east"}],
        "patch": {"size": 3},
        "split": {"strategy": "random"},
        "models": models,
    }


def test_builtin_table_drives_every_list():
    names = registry.model_names()
    assert names == ("decision_tree", "random_forest", "gradient_boosting", "svm", "max_likelihood", "cnn", "resnet")
    assert registry.deep_models() == ("cnn", "resnet")
    from pipeline.config import schema as config
    from pipeline.models import MODEL_SUFFIX

    assert tuple(config.models_config_class().model_fields) == names
    assert config.MODEL_NAMES == names and config.DEEP_MODELS == ("cnn", "resnet")
    assert MODEL_SUFFIX == {n: (".pt" if n in ("cnn", "resnet") else ".skops") for n in names}
    with pytest.raises(InputError, match="unknown model 'toy'"):
        registry.get("toy")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.ModelSpec("svm", ToyConfig, ToyModel))


def test_toy_model_is_configurable_only_once_registered(tmp_path, toy):
    img, labels = _scene(tmp_path)
    cfg = parse_config(_raw(img, labels, {"toy": {"smoothing": 1e-6}, "decision_tree": {}}))
    assert cfg.models.enabled() == ["decision_tree", "toy"]  # table order
    assert cfg.models.toy.smoothing == 1e-6
    with pytest.raises(InputError, match=r"unknown key 'models\.toy\.smothing'"):
        parse_config(_raw(img, labels, {"toy": {"smothing": 1}}))
    assert parse_config(_raw(img, labels, {}), models=["toy"]).models.enabled() == ["toy"]
    registry.unregister("toy")
    with pytest.raises(InputError, match=r"unknown key 'models\.toy'"):
        parse_config(_raw(img, labels, {"toy": {}}))
    registry.register(TOY)


def test_toy_model_trains_maps_and_reloads_through_the_pipeline(tmp_path, toy):
    from pipeline.cli.main import main
    from pipeline.runner.context import init_run_dir
    from pipeline.runner.pipeline import run_pipeline

    img, labels = _scene(tmp_path)
    cfg = RunConfig.model_validate(_raw(img, labels, {"toy": {}}))
    ctx = init_run_dir(cfg, tmp_path, out=tmp_path / "runs", run_id="r", progress=False)
    run = run_pipeline(ctx)
    model_file = run / "models" / "toy.skops"
    assert model_file.exists() and (run / "maps" / "toy.tif").exists()
    m = load_model(model_file)
    assert isinstance(m, ToyModel) and m.meta.model == "toy"
    with rasterio.open(run / "maps" / "toy.tif") as src:
        mapped = src.read(1)
    # the two halves are spectrally apart: the toy model separates them
    assert (mapped[:, :20] == 1).mean() > 0.95 and (mapped[:, -20:] == 2).mean() > 0.95
    # and `landcover map` applies the saved toy model like any other
    out = tmp_path / "again.tif"
    assert main(["map", "--model", str(model_file), "--raster", str(img), "--out", str(out), "--no-progress"]) == 0
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mapped)
    built = build_model("toy", ToyConfig(), m.meta, seed=0)
    assert type(built) is ToyModel
