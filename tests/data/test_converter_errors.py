"""User errors of the converters, each a one-line CSRAError: VOC2007, COCO 2014, WIDER-Attribute and custom VOC,
COCO and CSV folders with the malformed input each one meets in practice."""


import pytest
from errorwalk import Walk, write

from csra.data import coco, custom, prepare, voc, wider

walk = Walk()
case, says = walk.case, walk.says


# --- converters: VOC2007, COCO 2014, WIDER-Attribute, custom VOC / COCO / CSV ------------------------------------
def voc_root(tmp, xml="<annotation><object><name>cat</name><difficult>0</difficult></object></annotation>",
             ids="000001\n"):
    root = tmp / "VOCdevkit"
    write(root / "VOC2007" / "Annotations" / "000001.xml", xml)
    for split in ("train", "val", "test"):
        write(root / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt", ids)
    return root


@case
def voc_without_voc2007_folder(tmp):
    voc.convert_voc07(tmp, ["cat"])


@case
def voc_broken_xml(tmp):
    voc.convert_voc07(voc_root(tmp, xml="<annotation><object>"), ["cat"])


@case
def voc_object_without_name(tmp):
    voc.convert_voc07(voc_root(tmp, xml="<annotation><object><difficult>0</difficult></object></annotation>"), ["cat"])


@case
def voc_difficult_not_0_or_1(tmp):
    xml = "<annotation><object><name>cat</name><difficult>yes</difficult></object></annotation>"
    voc.convert_voc07(voc_root(tmp, xml=xml), ["cat"])


@case
def voc_unknown_class(tmp):
    voc.convert_voc07(voc_root(tmp), ["dog"])


@case
def voc_listed_image_without_annotation(tmp):
    voc.convert_voc07(voc_root(tmp, ids="000001\n000002\n"), ["cat"])


@case
def voc_missing_image_set(tmp):
    root = voc_root(tmp)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    voc.convert_voc07(root, ["cat"])


@case
def voc_image_set_not_utf8(tmp):
    voc.convert_voc07(voc_root(tmp, ids=b"\xff\xfe0\x000\x00\n"), ["cat"])


def coco_file(tmp, content):
    return write(tmp / "instances.json", content)


@case
def coco_not_json(tmp):
    coco.load_coco(coco_file(tmp, "{'images': []"))


@case
def coco_missing_file(tmp):
    coco.load_coco(tmp / "instances.json")


@case
def coco_not_an_object(tmp):
    coco.load_coco(coco_file(tmp, []))


@case
def coco_image_without_file_name(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))


@case
def coco_no_categories(tmp):
    coco.load_coco(coco_file(tmp, {"images": [], "annotations": [], "categories": []}))


@case
def coco_unknown_category(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": 7}],
                                   "categories": [{"id": 1, "name": "a"}]}))


@case
def coco_category_id_not_a_number(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": [1]}],
                                   "categories": [{"id": 1, "name": "a"}]}))


@case
def coco2014_with_too_few_categories(tmp):
    write(tmp / "annotations" / "instances_train2014.json",
          {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]})
    coco.convert_coco2014(tmp)


def wider_file(tmp, images):
    return write(tmp / "wider.json", {"images": images} if images is not None else [])


PERSON = {"bbox": [1, 2, 3, 4], "attribute": [1] * 14}


@case
def wider_not_an_object(tmp):
    wider.wider_items(wider_file(tmp, None), "Image", 0)


@case
def wider_image_without_targets(tmp):
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg"}]), "Image", 0)


@case
def wider_person_without_bbox(tmp):
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [{"attribute": [1] * 14}]}]), "Image", 0)


@case
def wider_attribute_code_2(tmp):
    person = {**PERSON, "attribute": [2] * 14}
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [person]}]), "Image", 0)


@case
def wider_attribute_not_a_number(tmp):
    person = {**PERSON, "attribute": [[1]] * 14}
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [person]}]), "Image", 0)


@case
def wider_13_attributes(tmp):
    person = {**PERSON, "attribute": [1] * 13}
    wider.wider_items(wider_file(tmp, [{"file_name": "a.jpg", "targets": [person]}]), "Image", 0)


@case
def wider_missing_annotation_file(tmp):
    wider.convert_wider(tmp)


@case
def custom_voc_without_annotations(tmp):
    custom.convert_custom_voc(tmp)


@case
def custom_voc_without_objects(tmp):
    write(tmp / "Annotations" / "a.xml", "<annotation></annotation>")
    write(tmp / "ImageSets" / "Main" / "train.txt", "a\n")
    write(tmp / "ImageSets" / "Main" / "test.txt", "a\n")
    custom.convert_custom_voc(tmp)


def coco_split(categories):
    return {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
            "categories": categories}


@case
def custom_coco_splits_with_other_categories(tmp):
    write(tmp / "train.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "test.json", coco_split([{"id": 1, "name": "b"}]))
    custom.convert_custom_coco(tmp)


@case
def custom_coco_class_list_differs(tmp):
    write(tmp / "train.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "test.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "classes.txt", "b\n")
    custom.convert_custom_coco(tmp)


@case
def custom_csv_missing(tmp):
    custom.convert_custom_csv(tmp)


@case
def custom_csv_bad_row(tmp):
    write(tmp / "train.csv", "a.jpg,cat,dog\n")
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_no_rows(tmp):
    write(tmp / "train.csv", "path,labels\n")
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_no_labels(tmp):
    write(tmp / "train.csv", "a.jpg,\n")
    write(tmp / "test.csv", "b.jpg,\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_label_not_in_class_list(tmp):
    write(tmp / "train.csv", "a.jpg,cat\n")
    write(tmp / "test.csv", "b.jpg,dog\n")
    write(tmp / "classes.txt", "cat\n")
    custom.convert_custom_csv(tmp)


@case
def custom_csv_not_utf8(tmp):
    write(tmp / "train.csv", "a.jpg,caf\xe9\n".encode("latin-1"))
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@case
def prepare_unknown_dataset(tmp):
    prepare.prepare_dataset("imagenet", tmp / "out", tmp)


@case
def prepare_without_raw_path(tmp):
    prepare.prepare_dataset("voc07", tmp / "out")


@case
def prepare_raw_path_missing(tmp):
    prepare.prepare_dataset("custom_csv", tmp / "out", tmp / "nowhere")


@pytest.mark.parametrize("name", sorted(walk.cases))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    walk.check(name, tmp_path)
