"""Exported forms match the eager model to 1e-4; `csra export` logs the program once per trained model and
registers it (serving it: tests/stages/team/test_stack.py)."""

import json
import sys
from functools import partial

import mlflow
import pytest
import torch
import yaml
from helpers import assert_one_line_error, make_tiny_checkpoint, new_store, repo_params, run

from csra.deploy.export import (
    PARITY_TOLERANCE,
    PHOTO_SIZES,
    check_parity,
    eager_scores,
    max_difference,
    onnx_runner,
    parity_images,
    require_onnx,
)
from csra.deploy.scoring import ScoringModel
from csra.errors import CSRAError
from csra.model.checkpoints import load_checkpoint_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mlflow_template):
    """(out dir, checkpoint, MLflow URI, outputs) of `csra export` (torch.export, ONNX, MLflow registration) and of
    a second export of the same checkpoint."""
    root = tmp_path_factory.mktemp("export")
    uri = new_store(root, mlflow_template)
    checkpoint = make_tiny_checkpoint(root / "train" / "model.pt")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(repo_params()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        code, output = run("export", "--checkpoint", str(checkpoint), "--out-dir", str(root / "export"), "--onnx",
                           "--registered-model", "tiny", "--register", "always", "--params", str(params))
        assert code == 0, output
        again = run("export", "--checkpoint", str(checkpoint), "--out-dir", str(root / "again"), "--onnx",
                    "--registered-model", "tiny", "--register", "always", "--params", str(params))
    assert again[0] == 0, again[1]
    return root / "export", checkpoint, uri, (output, again[1])


def test_scoring_model_is_the_eager_model_on_normalised_resized_images(tiny_checkpoint):
    model, _ = load_checkpoint_model(tiny_checkpoint)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)  # already img_size: the resize keeps them
    with torch.no_grad():
        expected = torch.sigmoid(model(images.float() / 255))  # ResNet mean 0, std 1
        assert torch.allclose(ScoringModel(model)(images), expected, atol=1e-6)


def test_torch_export_and_onnx_match_the_eager_pil_path_on_fresh_images(exported):
    out, checkpoint, uri, (output, _) = exported
    model, _ = load_checkpoint_model(checkpoint)
    eager = partial(eager_scores, model)  # PIL's resize itself, as evaluate and demo
    fresh = parity_images(32, seed=123)
    assert [tuple(b.shape) for b in fresh[:2]] == [(1, 3, 32, 32), (3, 3, 45, 59)]
    assert [tuple(b.shape[2:]) for b in fresh[2:]] == list(PHOTO_SIZES)  # photo-like JPEGs
    mlflow.set_tracking_uri(uri)
    registered = mlflow.pyfunc.load_model("models:/tiny/1")  # code + the torch.export program: nothing pickled

    def served(images):  # pixel arrays, as a client holding pixels sends them
        return torch.tensor(registered.predict(images.numpy()).to_numpy(dtype="float32"))

    assert max_difference(eager, served, fresh) <= 1e-6  # the same pixels as evaluate's: float noise only
    assert max_difference(eager, onnx_runner(out / "model.onnx"), fresh) <= 1e-6
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]  # nothing of MLflow's: DVC tracks it
    recorded = json.loads((out / "export.json").read_text())["parity"]["max_abs_difference"]
    assert set(recorded) == {"model.pt2", "model.onnx", "served model"} and max(recorded.values()) <= PARITY_TOLERANCE
    assert "model.onnx: max |score - eager score|" in output


def test_a_form_beyond_the_tolerance_is_refused():
    assert check_parity({"model.pt2": 0.0, "model.onnx": 9e-5}) == {"model.pt2": 0.0, "model.onnx": 9e-5}
    with pytest.raises(CSRAError, match=r"model.onnx: scores differ from the eager model by 2.00e-04 > 0.0001"):
        check_parity({"model.pt2": 0.0, "model.onnx": 2e-4})


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_onnx_without_the_export_extra_is_one_line_naming_it(monkeypatch, tmp_path, tiny_checkpoint, missing):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(repo_params()))
    monkeypatch.setitem(sys.modules, missing, None)  # what an environment without the extra imports
    with pytest.raises(CSRAError, match=rf"needs the export extra: {missing} cannot be imported"):
        require_onnx()
    code, output = run("export", "--checkpoint", str(tiny_checkpoint), "--out-dir", str(tmp_path / "export"), "--onnx",
                       "--params", str(params))
    assert_one_line_error(code, output, "export.onnx, --onnx", f"{missing} cannot be imported",
                          "pip install 'csra[export]'")
    assert not (tmp_path / "export").exists()


def test_export_json_states_the_input_contract_and_the_registered_version(exported):
    out, _, uri, (output, _) = exported
    contract = json.loads((out / "export.json").read_text())
    assert contract["input"]["dtype"] == "uint8" and contract["input"]["shape"] == ["batch", 3, "height", "width"]
    assert contract["preprocessing"]["resize"] == [32, 32] and contract["preprocessing"]["std"] == [1.0, 1.0, 1.0]
    assert contract["output"]["classes"] == ["circle", "square", "triangle"]
    assert "MLflow: registered: models:/tiny/1; champion: none yet" in output  # no evaluation: nothing elects it
    mlflow.set_tracking_uri(uri)
    [run] = mlflow.search_runs(experiment_names=["csra"], output_format="list")
    registered = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/export/registration.json")
    assert (registered["name"], registered["version"], registered["model_uri"]) == ("tiny", "1", "models:/tiny/1")
    assert registered["champion"] is None and registered["logged_model"].startswith("models:/m-")


def test_a_second_export_of_the_same_model_neither_logs_nor_registers_it_again(exported):
    out, _, uri, (_, again) = exported
    assert "MLflow: already registered: models:/tiny/1" in again
    for name in ("export.json", "model.onnx"):  # the same model gives the same files (DVC tracks them)
        assert (out / name).read_bytes() == (out.parent / "again" / name).read_bytes(), name
    mlflow.set_tracking_uri(uri)
    assert len(mlflow.search_logged_models(output_format="list", experiment_ids=[
        mlflow.get_experiment_by_name("csra").experiment_id])) == 1
    assert [v.version for v in mlflow.MlflowClient().search_model_versions("name = 'tiny'")] in ([1], ["1"])
