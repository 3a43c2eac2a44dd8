import hashlib
import xml.etree.ElementTree as ET

from csra.data.formats import read_classes
from csra.data.synthetic import CLASSES, SyntheticSpec, generate_synthetic
from csra.data.voc import convert_voc07

SPEC = SyntheticSpec(num_trainval=30, num_test=10, num_demo=2, width=80, height=60, seed=3)


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_synthetic(tmp_path / "a", SPEC)
    b = generate_synthetic(tmp_path / "b", SPEC)
    c = generate_synthetic(tmp_path / "c", SyntheticSpec(**{**SPEC.__dict__, "seed": 4}))
    assert digest(a) == digest(b) != digest(c)


def test_voc_layout_and_annotations(tmp_path):
    root = generate_synthetic(tmp_path / "synthetic", SPEC)
    voc = root / "VOC2007"
    assert len(list((voc / "JPEGImages").glob("*.jpg"))) == 40
    assert len(list((voc / "Annotations").glob("*.xml"))) == 40
    main = voc / "ImageSets" / "Main"
    sets = {n: (main / f"{n}.txt").read_text().split() for n in ("train", "val", "trainval", "test")}
    assert sorted(sets["train"] + sets["val"]) == sets["trainval"]
    assert len(sets["trainval"]) == 30 and len(sets["test"]) == 10
    assert not set(sets["trainval"]) & set(sets["test"])
    assert read_classes(root / "classes.txt") == CLASSES
    assert len(list((root / "demo").iterdir())) == 2
    names, difficult = set(), 0
    for xml in (voc / "Annotations").glob("*.xml"):
        for obj in ET.parse(xml).getroot().iter("object"):
            names.add(obj.findtext("name"))
            difficult += obj.findtext("difficult") == "1"
            box = [int(obj.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= 80 and 1 <= box[1] <= box[3] <= 60
    assert names <= set(CLASSES) and len(names) >= 5


def test_images_carry_several_classes_and_some_difficult(tmp_path):
    spec = SyntheticSpec(seed=0, num_trainval=50, num_test=150, num_demo=0, width=160, height=120)
    root = generate_synthetic(tmp_path / "s", spec)
    trainval, test = convert_voc07(root, CLASSES)
    per_image = [sum(t == 1 for t in item["target"]) for item in test]
    assert max(per_image) >= 3 and sum(n >= 2 for n in per_image) > len(per_image) / 3
    assert any(0 in item["target"] for item in test)  # difficult-only classes exist and stay 0 in test
