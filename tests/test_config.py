from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.core.errors import InputError

BASE = {
    "rasters": {"paths": "img.tif"},
    "labels": {"path": "labels.gpkg", "field": "class"},
    "classes": [{"id": 1, "name": "water", "color": "#0000ff"}, {"id": 2, "name": "forest"}],
}


def test_defaults_and_types():
    cfg = parse_config(BASE)
    assert cfg.rasters.paths == ["img.tif"]
    assert cfg.patch.size == 9
    assert cfg.split.strategy == "auto"
    assert cfg.models.enabled() == ["decision_tree", "gradient_boosting"]
    assert cfg.classes[0].rgb == (0, 0, 255)


def test_unknown_key_names_the_path():
    raw = {**BASE, "models": {"cnn": {"epocs": 3}}}
    with pytest.raises(InputError, match=r"unknown key 'models\.cnn\.epocs'"):
        parse_config(raw, "x.yaml")


def test_even_patch_size_rejected():
    with pytest.raises(InputError, match=r"patch\.size: patch size must be odd"):
        parse_config({**BASE, "patch": {"size": 8}})


@pytest.mark.parametrize(
    "key, raw",
    [
        ("seed", {"seed": True}),
        ("patch.size", {"patch": {"size": True}}),
        ("models.cnn.epochs", {"models": {"cnn": {"epochs": False}}}),
    ],
)
def test_true_or_false_is_not_a_number(key, raw):
    """YAML's ``seed: true`` is not seed 1: a number setting given true/false is an error naming the key."""
    with pytest.raises(InputError, match=rf"{key}: expected a number, not (true|false)"):
        parse_config({**BASE, **raw}, "c.yaml")
    # a setting that is a switch still takes true/false, and a number is still a number
    cfg = parse_config({**BASE, "seed": 1, "split": {"random_contrast": False}})
    assert cfg.seed == 1 and cfg.split.random_contrast is False


def test_fractions_must_sum_to_one():
    with pytest.raises(InputError, match="split.fractions"):
        parse_config({**BASE, "split": {"fractions": {"train": 0.5, "validation": 0.2, "test": 0.2}}})


def test_missing_required_key():
    raw = {k: v for k, v in BASE.items() if k != "labels"}
    with pytest.raises(InputError, match="missing required key 'labels'"):
        parse_config(raw, "c.yaml")


def test_duplicate_class_and_bad_colour():
    dup = {**BASE, "classes": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}
    with pytest.raises(InputError, match="duplicate class id"):
        parse_config(dup)
    bad = {**BASE, "classes": [{"id": 1, "name": "a", "color": "red"}, {"id": 2, "name": "b"}]}
    with pytest.raises(InputError, match=r"classes\.0\.color"):
        parse_config(bad)


def test_set_overrides_and_model_filter():
    cfg = parse_config(
        BASE, overrides=["patch.size=5", "models.cnn.epochs=2", "split.strategy=kfold"], models=["cnn", "svm"]
    )
    assert cfg.patch.size == 5
    assert cfg.split.strategy == "kfold"
    assert cfg.models.enabled() == ["svm", "cnn"]
    assert cfg.models.cnn.epochs == 2
    with pytest.raises(InputError, match="unknown model 'xgboost'"):
        parse_config(BASE, models=["xgboost"])
    with pytest.raises(InputError, match="expected key.path=value"):
        parse_config(BASE, overrides=["patch.size"])


def test_config_hash_is_stable():
    a = parse_config(BASE)
    b = parse_config(yaml.safe_load(yaml.safe_dump(BASE)))
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != parse_config(BASE, overrides=["seed=1"]).config_hash()


def test_load_config_errors(tmp_path: Path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    cfg, base = load_config(good)
    assert base == tmp_path.resolve()


def test_demo_config_is_valid():
    cfg, _ = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")
    assert cfg.rasters.paths[0].startswith("sample:nc-landsat7/")
    assert set(cfg.models.enabled()) == {
        "decision_tree",
        "random_forest",
        "gradient_boosting",
        "svm",
        "max_likelihood",
        "cnn",
        "resnet",
    }


def test_every_problem_is_listed_with_its_key_path():
    raw = {
        "rasters": {"paths": "a.tif", "bands": [1.5], "nodatax": 3},
        "labels": {"path": "l.gpkg"},
        "classes": [{"id": 1, "name": "a", "color": "red"}, {"id": 300, "name": "b"}],
        "patch": {"size": 8},
        "models": {"svm": {"gamma": ["x"]}, "cnn": {"epocs": 2}},
    }
    with pytest.raises(InputError) as e:
        parse_config(raw, "x.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "more problems" not in msg
    assert msg.startswith("x.yaml: 7 problems: ")
    for part in (
        "rasters.bands.0:",
        "unknown key 'rasters.nodatax'",
        "classes.0.color: colour must look like",
        "classes.1.id:",
        "patch.size: patch size must be odd",
        "models.svm.gamma.0:",
        "unknown key 'models.cnn.epocs'",
    ):
        assert part in msg, part
    # The union's alternatives are one problem, not a key path with a type name in it.
    assert ".int" not in msg and "literal" not in msg
    with pytest.raises(InputError, match=r"2 problems: missing required key 'labels'; missing required key 'classes'"):
        parse_config({"rasters": {"paths": "a.tif"}}, "x.yaml")


def test_cli_lists_every_config_problem(tmp_path: Path, capsys):
    from pipeline.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "patch": {"size": 4}, "split": {"strategy": "diagonal"}}))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 problems" in err[0] and "patch.size" in err[0] and "split.strategy" in err[0]
