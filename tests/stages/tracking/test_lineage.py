"""What a run was made from, as DVC names it: the prepared folder's hash computed as DVC computes it, dvc.lock
trusted only under a DVC stage, and the logged model's key of checkpoint and model config."""

import os
import subprocess
import sys

import yaml

from csra.model.network import ModelConfig
from stages.tracking.lineage import data_digest, dvc_md5, model_key

# Made in this order: neither sorted nor a per-folder walk's order. As relative paths, sorted: a-b, a.txt, a/b/c.txt,
# a/z, a0, z.txt (`-` < `.` < `/` < `0`), where a walk that sorts each folder's names would list a/ before a-b.
FILES = ("z.txt", "a0", "a/z", "a/b/c.txt", "a.txt", "a-b")


def test_a_folder_hash_is_the_one_dvc_computes(tmp_path):
    folder = tmp_path / "prepared"
    for i, name in enumerate(FILES):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"file {i}\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for command in (["init", "--no-scm", "-q"], ["add", "-q", "prepared"]):
        subprocess.run([sys.executable, "-m", "dvc", *command], cwd=tmp_path, env=env, check=True)
    added = yaml.safe_load((tmp_path / "prepared.dvc").read_text())["outs"][0]
    assert dvc_md5(folder) == added["md5"]


def test_outside_a_dvc_stage_the_folder_is_hashed_not_read_from_dvc_lock(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "prepared"
    folder.mkdir(parents=True)
    (folder / "train.json").write_text("[]")
    lock = {"schema": "2.0", "stages": {"prepare": {"cmd": "csra prepare", "outs": [
        {"path": "data/prepared", "md5": "0123456789abcdef0123456789abcdef.dir", "nfiles": 1}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))  # stale: the folder changed since
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert data_digest(folder.relative_to(tmp_path)) == dvc_md5(folder)
    monkeypatch.setenv("DVC_STAGE", "prepare")  # DVC has just checked the folder against dvc.lock
    assert data_digest(folder.relative_to(tmp_path)) == "0123456789abcdef0123456789abcdef.dir"


def test_the_logged_models_key_changes_with_the_model_config(tiny_checkpoint):
    small, large = (ModelConfig.create("resnet18", 3, num_heads=2, lam=0.1, img_size=size).to_dict()
                    for size in (32, 64))
    assert model_key(tiny_checkpoint, small) == model_key(tiny_checkpoint, dict(small))
    assert model_key(tiny_checkpoint, small) != model_key(tiny_checkpoint, large)
