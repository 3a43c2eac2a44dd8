"""The CLI's contract for bad input: one 'error:' line naming the file or key, exit status 1, no traceback; and a
second SIGTERM ends a command that is still stopping at once."""

import re
import subprocess
import sys
import time

from helpers import assert_one_line_error, edit_params, ok, run


def commands():
    from stages.cli import app

    return [command.name or command.callback.__name__ for command in app.registered_commands]


def test_help_lists_every_command_and_each_command_has_its_own_help():
    code, output = run("--help")
    assert code == 0
    assert {"prepare", "train", "evaluate", "demo", "export", "search", "params", "sync"} <= set(commands())
    assert re.findall(r"^│ (\w+) ", output, re.M) == commands()  # one row each in the Commands panel, in order
    for name in commands():
        code, output = run(name, "--help")
        assert code == 0 and re.search(rf"Usage: .* {name} \[OPTIONS\]", output), (name, output)


def test_missing_params_file(tmp_path):
    assert_one_line_error(*run("train", "--params", str(tmp_path / "nope.yaml")), "params file not found")


def test_wrong_type(tiny_params):
    edit_params(tiny_params, **{"train.epochs": "ten"})
    assert_one_line_error(*run("train"), "params.yaml: train.epochs must be an integer, got 'ten'")


def test_real_dataset_needs_its_folder_and_leaves_nothing(tiny_params, tmp_path):
    assert_one_line_error(*run("prepare", "voc07"), "data.raw_path")
    assert_one_line_error(*run("prepare", "voc07", "--data-path", str(tmp_path / "VOCdevkit")),
                          "raw data folder of dataset voc07 not found")
    broken = tmp_path / "VOCdevkit" / "VOC2007"
    (broken / "ImageSets" / "Main").mkdir(parents=True)
    for name in ("train", "val", "test"):
        (broken / "ImageSets" / "Main" / f"{name}.txt").write_text("000001\n")
    (broken / "Annotations").mkdir()
    (broken / "Annotations" / "000001.xml").write_text("<annotation><object>")
    assert_one_line_error(*run("prepare", "voc07", "--data-path", str(tmp_path / "VOCdevkit")), "000001.xml")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.json"))


def test_missing_checkpoint(tiny_params):
    assert_one_line_error(*run("evaluate", "--checkpoint", "none.pt"), "none.pt: checkpoint not found")
    assert_one_line_error(*run("demo", "--checkpoint", "none.pt"), "none.pt: checkpoint not found")


def test_unreadable_training_image_in_a_loader_worker(tiny_params):
    ok("prepare")
    broken = sorted((tiny_params.parent / "data/prepared/synthetic/VOC2007/JPEGImages").glob("*.jpg"))
    for path in broken:
        path.write_bytes(b"broken")
    edit_params(tiny_params, **{"train.num_workers": 1, "data.bad_images": "fail"})
    code, output = run("train")
    assert_one_line_error(code, output, "cannot read image")
    assert output.split("error: ")[1].startswith("data/prepared/synthetic/VOC2007/JPEGImages/0")
    edit_params(tiny_params, **{"data.bad_images": "skip", "train.num_workers": 0})  # all skipped: nothing left
    assert_one_line_error(*run("train"), "epoch 1: none of the training images could be read")


def loaded_by(*args, cwd=None):
    """The heavy libraries a `csra` process loads for these arguments."""
    import subprocess
    import sys

    probe = ("import sys; from stages.cli import main; sys.argv = ['csra', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'torchvision', 'mlflow', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, cwd=cwd)
    return done.stdout.strip().splitlines()[-1]


def test_help_loads_no_heavy_library():
    for args in (["--help"], *([name, "--help"] for name in commands())):
        assert loaded_by(*args) == "[]", args


def test_scoring_a_scores_file_loads_no_torch_and_matplotlib_only_for_plots(tiny_params, tmp_path):
    import json

    (tmp_path / "ann.json").write_text(json.dumps([{"target": [1, 0], "img_path": "a.jpg"},
                                                   {"target": [0, 1], "img_path": "b.jpg"}]))
    (tmp_path / "scores.json").write_text(json.dumps([{"file_name": "a", "scores": [0.9, 0.1]},
                                                      {"file_name": "b", "scores": [0.2, 0.7]}]))
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    edit_params(tiny_params, **{"data.prepared_dir": str(tmp_path)})
    args = ("evaluate", "--scores", str(tmp_path / "scores.json"), "--annotations", str(tmp_path / "ann.json"),
            "--dataset", "custom_csv", "--out-dir", str(tmp_path / "out"))
    assert loaded_by(*args, cwd=tiny_params.parent) == "[]" and (tmp_path / "out/metrics.json").is_file()
    assert loaded_by(*args, "--plots", cwd=tiny_params.parent) == "['matplotlib']"
    assert (tmp_path / "out/plots/pr_curves.png").is_file()


# The first SIGTERM raises Interrupted (the stage unwinds: its run ends KILLED, its outputs stay whole); a stage
# whose unwinding hangs (here: sleeps) is ended by the second at once, with SIGTERM's status.
SLOW_TO_STOP = """
import os, signal, time
from stages.common import stop_on_signals
stop_on_signals()
try:
    os.kill(os.getpid(), signal.SIGTERM)
except KeyboardInterrupt as e:
    print(type(e).__name__, e, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
print("not reached")
"""


def test_a_second_sigterm_ends_a_command_that_is_still_stopping_at_once():
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SLOW_TO_STOP], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (143, "Interrupted SIGTERM\n"), done
    assert time.monotonic() - started < 30
