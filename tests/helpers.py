"""Helpers shared by the tests: run a `csra` command in-process, check the one-line error contract, edit params."""

import yaml
from typer.testing import CliRunner

from stages.cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def assert_one_line_error(code, output, *needles):
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in errors[0]


DELETE = object()


def edit_params(path, **changes):
    """Set dotted keys of a params file: None writes null, DELETE removes the key."""
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(params))


def train_config(**changes):
    """A TrainConfig for tiny CPU runs: resnet18 from scratch at 32 px, the paper's SGD schedule, 2 epochs."""
    from csra.train.config import TrainConfig

    values = dict(
        model="resnet18", pretrained="none", head="csra", num_heads=1, lam=0.1, img_size=32, optimizer="sgd", epochs=2,
        batch_size=8, lr=0.01, classifier_lr_mult=10.0, momentum=0.9, weight_decay=1e-4, warmup_epochs=2,
        step_size=4, gamma=0.1, loss="bce", label_smoothing=0.0, asl_gamma_neg=4.0, asl_gamma_pos=0.0,
        asl_clip=0.05, ema_decay=0.0, amp=True, channels_last=False, compile=False, sync_bn=False, deterministic=False,
        num_workers=0, device="cpu", seed=0, tune_thresholds=True,
    )
    return TrainConfig(**{**values, **changes})


def training_run(checkpoint):
    """The MLflow run that trained this checkpoint (the latest, by the checkpoint's MD5), as the stages find it."""
    import mlflow

    from stages.tracking import training_run_of

    run = training_run_of(mlflow, checkpoint, execution="")
    assert run is not None, f"no training run made {checkpoint}"
    return run
