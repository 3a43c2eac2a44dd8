"""The params schema: every rule gives one `error:` line naming the key and what is allowed, before any work is done
and before any MLflow run is created; every key reaches MLflow under its own name."""

import math

import mlflow
import pytest
import yaml
from helpers import DELETE, assert_one_line_error, edit_params, load_all_params, ok, repo_params, run

from csra.errors import CSRAError


@pytest.mark.parametrize("key, value, message", [
    ("train.epochs", 0, "train.epochs must be ≥ 1, got 0"),
    ("train.batch_size", 0, "train.batch_size must be ≥ 1, got 0"),
    ("evaluate.batch_size", 0, "evaluate.batch_size must be ≥ 1, got 0"),
    ("train.step_size", 0, "train.step_size must be ≥ 1, got 0"),
    ("train.gamma", -1, "train.gamma must be > 0, got -1.0"),
    ("train.gamma", 0, "train.gamma must be > 0, got 0.0"),
    ("train.lr", 0, "train.lr must be > 0, got 0.0"),
    ("train.lr", -0.01, "train.lr must be > 0, got -0.01"),
    ("train.lr", "fast", "train.lr must be a number, got 'fast'"),
    ("train.lr", float("nan"), "train.lr must be a finite number, got nan"),
    ("train.classifier_lr_mult", 0, "train.classifier_lr_mult must be > 0, got 0.0"),
    ("train.ema_decay", 1, "train.ema_decay must be < 1, got 1.0"),
    ("train.ema_decay", -0.1, "train.ema_decay must be ≥ 0, got -0.1"),
    ("train.momentum", 1.0, "train.momentum must be < 1, got 1.0"),
    ("train.weight_decay", -1e-4, "train.weight_decay must be ≥ 0, got -0.0001"),
    ("train.warmup_epochs", -1, "train.warmup_epochs must be ≥ 0, got -1"),
    ("train.label_smoothing", 1.0, "train.label_smoothing must be < 1, got 1.0"),
    ("train.asl_clip", 1.0, "train.asl_clip must be < 1, got 1.0"),
    ("train.num_workers", -1, "train.num_workers must be auto or an integer ≥ 0, got -1"),
    ("train.num_workers", "many", "train.num_workers must be auto or an integer ≥ 0, got 'many'"),
    ("train.num_workers", 1.5, "train.num_workers must be auto or an integer ≥ 0, got 1.5"),
    ("train.num_workers", None, "train.num_workers must be auto or an integer ≥ 0, got null"),
    ("train.deterministic", "yes", "train.deterministic must be true or false, got 'yes'"),
    ("train.num_heads", 3, "train.num_heads must be one of 1, 2, 4, 6, 8, got 3"),
    ("train.img_size", 16, "train.img_size must be ≥ 32, got 16"),
    ("train.optimizer", "adam", "train.optimizer must be one of sgd, adamw, got 'adam'"),
    ("train.loss", "focal", "train.loss must be one of bce, asl, got 'focal'"),
    ("train.amp", "yes", "train.amp must be true or false, got 'yes'"),
    ("train.device", "gpu", "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("train.device", None, "train.device must be a string, got null"),
    ("train.lam", None, "train.lam must be a number, got null"),
    ("train.resume", "always", "train.resume must be one of auto, never, got 'always'"),
    ("evaluate.threshold", 1.5, "evaluate.threshold must be ≤ 1, got 1.5"),
    ("evaluate.threshold", -0.1, "evaluate.threshold must be ≥ 0, got -0.1"),
    ("evaluate.num_workers", -2, "evaluate.num_workers must be auto or an integer ≥ 0, got -2"),
    ("evaluate.num_workers", True, "evaluate.num_workers must be auto or an integer ≥ 0, got True"),
    ("evaluate.deterministic", 1, "evaluate.deterministic must be true or false, got 1"),
    ("data.prepared_dir", None, "data.prepared_dir must be a string, got null"),
    ("data.dataset", "imagenet", "data.dataset must be one of synthetic, voc07, coco, wider, custom_voc, "
                                 "custom_coco, custom_csv, got 'imagenet'"),
    ("prepare.synthetic.num_test", 0, "prepare.synthetic.num_test must be ≥ 1, got 0"),
    ("demo.thresholds", "best", "demo.thresholds must be one of global, per_class, got 'best'"),
    ("export.registered_model", "my model", "export.registered_model must be a model name (letters, digits, _ . -), "
                                            "or auto: csra-<data.dataset>, got 'my model'"),
    ("tracking.experiment", "", "tracking.experiment must be an experiment name, got ''"),
    ("tracking.system_metrics", -1, "tracking.system_metrics must be ≥ 0, got -1.0"),
    ("export.register", "sometimes", "export.register must be one of always, better, never, got 'sometimes'"),
    ("export.champion_metric", "map", "export.champion_metric must be one of mAP, CP, CR, CF1, OP, OR, OF1, "
                                      "CP_top3, CR_top3, CF1_top3, OP_top3, OR_top3, OF1_top3, got 'map'"),
    ("train.head", "fc", "train.head must be one of csra, gap, got 'fc'"),
])
def test_each_rule_names_the_key_and_what_is_allowed(tiny_params, key, value, message):
    edit_params(tiny_params, **{key: value})
    with pytest.raises(CSRAError) as info:
        load_all_params(tiny_params)
    assert str(info.value) == f"{tiny_params}: {message}"


def test_a_vit_needs_a_multiple_of_16(tiny_params):
    edit_params(tiny_params, **{"train.model": "vit_b16_224", "train.img_size": 200})
    assert_one_line_error(*run("train"), "train.img_size of vit_b16_224 must be a multiple of 16, got 200")


def test_misspelt_keys_are_refused_with_the_closest_known_one(tiny_params):
    data = yaml.safe_load(tiny_params.read_text())
    data["train"]["lamda"] = 0.9
    tiny_params.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run("train"), "params.yaml: unknown key train.lamda (did you mean lam?)")
    del data["train"]["lamda"]
    data["evalute"] = data.pop("evaluate")
    tiny_params.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run("evaluate"), "params.yaml: unknown key evalute (did you mean evaluate?)")


@pytest.mark.parametrize("stage", ["prepare", "train", "demo"])
def test_a_stage_that_reads_part_of_a_group_still_refuses_a_misspelt_key_in_it(tiny_params, stage):
    """prepare, train and the stages after train each read some keys of `data`: a typo there is caught by all."""
    data = yaml.safe_load(tiny_params.read_text())
    data["data"]["selecton"] = "test"
    tiny_params.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run(stage), "params.yaml: unknown key data.selecton (did you mean selection?); data takes "
                                       "dataset, raw_path, prepared_dir, bad_images, selection, val_fraction, val_seed")


def test_bad_values_stop_before_any_work_or_mlflow_run(tiny_params, mlflow_store):
    ok("prepare")
    for option, value, message in (("--epochs", "0", "train.epochs must be ≥ 1"),
                                   ("--lr", "-1", "train.lr must be > 0"),
                                   ("--batch-size", "0", "train.batch_size must be ≥ 1")):
        assert_one_line_error(*run("train", option, value), message)
    mlflow.set_tracking_uri(mlflow_store)
    assert mlflow.search_experiments(filter_string="name = 'csra'") == []
    assert not (tiny_params.parent / "results").exists()


def test_missing_key_and_not_a_mapping(tiny_params):
    edit_params(tiny_params, **{"train.seed": DELETE})
    assert_one_line_error(*run("train"), "params.yaml: missing key train.seed")
    data = yaml.safe_load(tiny_params.read_text())
    data["train"] = [1, 2]
    tiny_params.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run("train"), "params.yaml: train must be a mapping of keys, got [1, 2]")
    tiny_params.write_bytes("data: {dataset: caf\xe9}\n".encode("latin-1"))
    assert_one_line_error(*run("prepare"), "params.yaml: not UTF-8 text")


def test_every_key_reaches_mlflow_under_its_name(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(repo_params()))
    flat, data = load_all_params(path), repo_params()

    def keys(node, prefix=""):
        for k, v in node.items():
            yield from keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]

    assert sorted(flat) == sorted(keys(data))
    assert flat["train.lam"] == 0.1 and flat["prepare.synthetic.seed"] == 0
    assert all(not isinstance(v, float) or math.isfinite(v) for v in flat.values())


def test_the_champion_metric_is_one_of_evaluates_metrics():
    import numpy as np

    from csra.evaluate.metrics import METRIC_NAMES, evaluate_scores

    metrics, _ = evaluate_scores(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[1, 0], [0, 1]]), "coco", 0.5)
    assert list(METRIC_NAMES) == list(metrics)


def test_a_min_or_max_bound_is_inclusive(tiny_params):
    for value in (0, 1):
        edit_params(tiny_params, **{"evaluate.threshold": value})
        assert load_all_params(tiny_params)["evaluate.threshold"] == value
    edit_params(tiny_params, **{"evaluate.threshold": 1.0000001})
    with pytest.raises(CSRAError) as info:
        load_all_params(tiny_params)
    assert str(info.value) == f"{tiny_params}: evaluate.threshold must be ≤ 1, got 1.0000001"


@pytest.mark.parametrize("value, message", [(0, "must be > 0, got 0.0"), (1, "must be < 1, got 1.0")])
def test_the_held_out_fraction_excludes_both_ends(tiny_params, value, message):
    edit_params(tiny_params, **{"data.val_fraction": value})
    with pytest.raises(CSRAError) as info:
        load_all_params(tiny_params)
    assert str(info.value) == f"{tiny_params}: data.val_fraction {message}"
