"""The CLI's contract for bad input: one 'error:' line naming the file or key, exit status 1, no traceback."""

from helpers import DELETE, assert_one_line_error, edit_params, run


def test_help_lists_the_five_stages():
    code, output = run("--help")
    assert code == 0
    for name in ("prepare", "train", "evaluate", "demo", "export"):
        assert name in output


def test_missing_params_file(tmp_path):
    assert_one_line_error(*run("train", "--params", str(tmp_path / "nope.yaml")), "params file not found")


def test_unknown_dataset(tiny_params):
    assert_one_line_error(*run("prepare", "imagenet"), "params.yaml: data.dataset must be one of synthetic, voc07",
                          "got 'imagenet'")


def test_wrong_type_and_missing_key(tiny_params):
    edit_params(tiny_params, **{"train.epochs": "ten"})
    assert_one_line_error(*run("train"), "params.yaml: train.epochs must be an integer, got 'ten'")
    edit_params(tiny_params, **{"train.epochs": 1, "train.seed": DELETE})
    run("prepare")
    assert_one_line_error(*run("train"), "params.yaml: missing key train.seed")


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


def test_unknown_model_and_head_count(tiny_params):
    run("prepare")
    assert_one_line_error(*run("train", "--model", "resnet7"), "params.yaml: train.model must be one of resnet18",
                          "got 'resnet7'")
    assert_one_line_error(*run("train", "--num-heads", "3"), "num_heads must be one of 1, 2, 4, 6, 8")


def test_missing_checkpoint(tiny_params):
    assert_one_line_error(*run("evaluate", "--checkpoint", "none.pt"), "none.pt: checkpoint not found")
    assert_one_line_error(*run("demo", "--checkpoint", "none.pt"), "none.pt: checkpoint not found")


def test_unreadable_training_image_in_a_loader_worker(tiny_params):
    run("prepare")
    broken = sorted((tiny_params.parent / "data/prepared/synthetic/VOC2007/JPEGImages").glob("*.jpg"))
    for path in broken:
        path.write_bytes(b"broken")
    edit_params(tiny_params, **{"train.num_workers": 1, "data.bad_images": "fail"})
    code, output = run("train")
    assert_one_line_error(code, output, "cannot read image")
    assert output.split("error: ")[1].startswith("data/prepared/synthetic/VOC2007/JPEGImages/0")
    edit_params(tiny_params, **{"data.bad_images": "skip", "train.num_workers": 0})  # all skipped: nothing left
    assert_one_line_error(*run("train"), "epoch 1: none of the training images could be read")
