"""User errors of the converters, each a one-line CSRAError: VOC2007, COCO 2014, WIDER-Attribute and custom VOC,
COCO and CSV folders with the malformed input each one meets in practice."""


import pytest
from errorwalk import Walk, write

from csra.data import coco, custom, prepared, voc, wider

walk = Walk()
says = walk.says


# --- converters: VOC2007, COCO 2014, WIDER-Attribute, custom VOC / COCO / CSV ------------------------------------
def voc_root(tmp, xml="<annotation><object><name>cat</name><difficult>0</difficult></object></annotation>",
             ids="000001\n"):
    root = tmp / "VOCdevkit"
    write(root / "VOC2007" / "Annotations" / "000001.xml", xml)
    for split in ("train", "val", "test"):
        write(root / "VOC2007" / "ImageSets" / "Main" / f"{split}.txt", ids)
    return root


@says("/VOCdevkit: no VOC2007 folder inside (expected the VOCdevkit folder)")
def voc_without_voc2007_folder(tmp):
    voc.convert_voc07(write(tmp / "VOCdevkit" / "VOC2012" / "README", "").parents[1], ["cat"])


@says("VOC2007/Annotations/000001.xml: cannot parse VOC annotation")
def voc_broken_xml(tmp):
    voc.convert_voc07(voc_root(tmp, xml="<annotation><object>"), ["cat"])


@says("Annotations/000001.xml: <object> needs a <name> and <difficult> of 0 or 1")
def voc_object_without_name(tmp):
    voc.convert_voc07(voc_root(tmp, xml="<annotation><object><difficult>0</difficult></object></annotation>"), ["cat"])


@says("Annotations/000001.xml: <object> needs a <name> and <difficult> of 0 or 1")
def voc_difficult_not_0_or_1(tmp):
    xml = "<annotation><object><name>cat</name><difficult>yes</difficult></object></annotation>"
    voc.convert_voc07(voc_root(tmp, xml=xml), ["cat"])


@says("Annotations/000001.xml: class 'cat' is not in the class list (1 classes)")
def voc_unknown_class(tmp):
    voc.convert_voc07(voc_root(tmp), ["dog"])


@says("Annotations/000002.xml: image 000002 is listed in ImageSets/Main but has no annotation")
def voc_listed_image_without_annotation(tmp):
    voc.convert_voc07(voc_root(tmp, ids="000001\n000002\n"), ["cat"])


@says("ImageSets/Main/test.txt: image set file not found")
def voc_missing_image_set(tmp):
    root = voc_root(tmp)
    (root / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    voc.convert_voc07(root, ["cat"])


@says("ImageSets/Main/val.txt: not UTF-8 text")
def voc_image_set_not_utf8(tmp):
    root = voc_root(tmp)
    write(root / "VOC2007" / "ImageSets" / "Main" / "val.txt", b"\xff\xfe0\x000\x00\n")  # train.txt is fine
    voc.convert_voc07(root, ["cat"])


def coco_file(tmp, content):
    return write(tmp / "instances.json", content)


@says("instances.json: not valid JSON")
def coco_not_json(tmp):
    coco.load_coco(coco_file(tmp, "{'images': []"))


@says("instances.json: COCO annotation file not found")
def coco_missing_file(tmp):
    coco.load_coco(tmp / "instances.json")


@says("instances.json: expected a COCO object with 'images', 'annotations' and 'categories' lists")
def coco_not_an_object(tmp):
    coco.load_coco(coco_file(tmp, []))


@says("instances.json: images[1] needs 'id' and 'file_name'")
def coco_image_without_file_name(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}], "annotations": [],
                                   "categories": [{"id": 1, "name": "a"}]}))


@says("instances.json: 'categories' is empty; expected at least one {'id', 'name'} category")
def coco_no_categories(tmp):
    coco.load_coco(coco_file(tmp, {"images": [], "annotations": [], "categories": []}))


@says("instances.json: annotations use category id 7, which 'categories' lacks")
def coco_unknown_category(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": 7}],
                                   "categories": [{"id": 1, "name": "a"}]}))


@says("instances.json: annotations[1] has 'category_id' [1]; COCO ids are integers")
def coco_category_id_not_a_number(tmp):
    coco.load_coco(coco_file(tmp, {"images": [{"id": 1, "file_name": "a.jpg"}],
                                   "annotations": [{"id": 1, "image_id": 1, "category_id": 1},
                                                   {"id": 2, "image_id": 1, "category_id": [1]}],
                                   "categories": [{"id": 1, "name": "a"}]}))


@says("annotations/instances_train2014.json: 1 categories, expected COCO's 80")
def coco2014_with_too_few_categories(tmp):
    write(tmp / "annotations" / "instances_train2014.json",
          {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]})
    coco.convert_coco2014(tmp)


def wider_file(tmp, images):
    return write(tmp / "wider.json", {"images": images} if images is not None else [])


PERSON = {"bbox": [1, 2, 3, 4], "attribute": [1] * 14}


def wider_person(tmp, person):
    """A file whose only bad person is images[1].targets[2]: a message must name both indices, in this order."""
    images = [{"file_name": "a.jpg", "targets": [PERSON]}, {"file_name": "b.jpg", "targets": [PERSON, PERSON, person]}]
    wider.wider_items(wider_file(tmp, images), "Image", 0)


@says("wider.json: expected an object with an 'images' list")
def wider_not_an_object(tmp):
    wider.wider_items(wider_file(tmp, None), "Image", 0)


@says("wider.json: images[1] needs a 'file_name' and a 'targets' list")
def wider_image_without_targets(tmp):
    images = [{"file_name": "a.jpg", "targets": [PERSON]}, {"file_name": "b.jpg"}]
    wider.wider_items(wider_file(tmp, images), "Image", 0)


@says("wider.json: images[1].targets[2] needs a 'bbox' [x, y, w, h]")
def wider_person_without_bbox(tmp):
    wider_person(tmp, {"attribute": [1] * 14})


@says("wider.json: images[1].targets[2] needs an 'attribute' list of -1, 0 and 1")
def wider_attribute_code_2(tmp):
    wider_person(tmp, {**PERSON, "attribute": [2] * 14})


@says("wider.json: images[1].targets[2] needs an 'attribute' list of -1, 0 and 1")
def wider_attribute_not_a_number(tmp):
    wider_person(tmp, {**PERSON, "attribute": [[1]] * 14})


@says("wider.json: images[1].targets[2] has 13 attributes, expected 14")
def wider_13_attributes(tmp):
    wider_person(tmp, {**PERSON, "attribute": [1] * 13})


@says("Annotations/wider_attribute_trainval.json: WIDER-Attribute annotation file not found")
def wider_missing_annotation_file(tmp):
    wider.convert_wider(tmp)


@says("/my_images: no Annotations folder inside (expected a VOC-layout folder)")
def custom_voc_without_annotations(tmp):
    custom.convert_custom_voc(write(tmp / "my_images" / "JPEGImages" / "a.jpg", "").parents[1])


@says("/Annotations: no <object> in the annotations of the listed images")
def custom_voc_without_objects(tmp):
    write(tmp / "Annotations" / "a.xml", "<annotation></annotation>")
    write(tmp / "ImageSets" / "Main" / "train.txt", "a\n")
    write(tmp / "ImageSets" / "Main" / "test.txt", "a\n")
    custom.convert_custom_voc(tmp)


def coco_split(categories):
    return {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1}],
            "categories": categories}


@says("test.json: 1 categories differ from the 1 of ", "train.json; both splits need the same categories")
def custom_coco_splits_with_other_categories(tmp):
    write(tmp / "train.json", coco_split([{"id": 1, "name": "a"}]))
    write(tmp / "test.json", coco_split([{"id": 1, "name": "b"}]))
    custom.convert_custom_coco(tmp)


@says("classes.txt: names differ from the categories of ", "train.json: class 1 is 'c', not 'b'")
def custom_coco_class_list_differs(tmp):
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    write(tmp / "train.json", coco_split(categories))
    write(tmp / "test.json", coco_split(categories))
    write(tmp / "classes.txt", "a\nc\n")
    custom.convert_custom_coco(tmp)


@says("train.csv: CSV file not found (rows of path,label1;label2)")
def custom_csv_missing(tmp):
    custom.convert_custom_csv(tmp)


@says("train.csv:2: expected 'path,label1;label2', got 'b.jpg,cat,dog'")
def custom_csv_bad_row(tmp):
    write(tmp / "train.csv", "a.jpg,cat\nb.jpg,cat,dog\n")
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@says("train.csv: no rows; expected rows of path,label1;label2")
def custom_csv_no_rows(tmp):
    write(tmp / "train.csv", "path,labels\n")
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@says("/my_images: no labels in train.csv or test.csv; expected rows of path,label1;label2")
def custom_csv_no_labels(tmp):
    write(tmp / "my_images" / "train.csv", "a.jpg,\n")
    write(tmp / "my_images" / "test.csv", "b.jpg,\n")
    custom.convert_custom_csv(tmp / "my_images")


@says("test.csv:2: label 'dog' is not in classes.txt")
def custom_csv_label_not_in_class_list(tmp):
    write(tmp / "train.csv", "a.jpg,cat\n")
    write(tmp / "test.csv", "b.jpg,cat\nc.jpg,dog\n")
    write(tmp / "classes.txt", "cat\n")
    custom.convert_custom_csv(tmp)


@says("train.csv: not UTF-8 text")
def custom_csv_not_utf8(tmp):
    write(tmp / "train.csv", "a.jpg,caf\xe9\n".encode("latin-1"))
    write(tmp / "test.csv", "b.jpg,cat\n")
    custom.convert_custom_csv(tmp)


@says("dataset voc07 needs data.raw_path: the VOCdevkit folder")
def prepare_without_raw_path(tmp):
    prepared.prepare_dataset("voc07", tmp / "out")


@says("nowhere: raw data folder of dataset custom_csv not found (data.raw_path)")
def prepare_raw_path_missing(tmp):
    prepared.prepare_dataset("custom_csv", tmp / "out", tmp / "nowhere")


@pytest.mark.parametrize("name", sorted(walk.cases))
def test_each_user_error_is_a_one_line_csra_error(name, tmp_path):
    walk.check(name, tmp_path)
