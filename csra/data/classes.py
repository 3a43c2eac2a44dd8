"""Class names of the public datasets (in the official index order) and the label format of each dataset."""

from __future__ import annotations

from csra.errors import CSRAError

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip

# COCO 2014's 80 categories in the order of their category ids.
COCO_CLASSES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic_light",
    "fire_hydrant", "stop_sign", "parking_meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports_ball", "kite", "baseball_bat", "baseball_glove", "skateboard", "surfboard",
    "tennis_racket", "bottle", "wine_glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot_dog", "pizza", "donut", "cake", "chair", "couch",
    "potted_plant", "bed", "dining_table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell_phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy_bear",
    "hair_drier", "toothbrush",
]  # fmt: skip

WIDER_ATTRIBUTES = [
    "Male", "longHair", "sunglass", "Hat", "Tshirt", "longSleeve", "formal", "shorts", "jeans", "longPants",
    "skirt", "faceMask", "logo", "stripe",
]  # fmt: skip

DATASET_CLASSES = {"voc07": VOC_CLASSES, "coco": COCO_CLASSES, "wider": WIDER_ATTRIBUTES}

# Label codes of each dataset's test file (see csra.data.annotations.LABEL_CODES); synthetic is VOC-made, and
# custom data keeps the codes of its layout (a CSV is 0/1 like COCO).
LABEL_FORMATS = {"synthetic": "voc07", "voc07": "voc07", "coco": "coco", "wider": "wider",
                 "custom_voc": "voc07", "custom_coco": "coco", "custom_csv": "coco"}


def label_format_of(dataset: str) -> str:
    if dataset not in LABEL_FORMATS:
        raise CSRAError(f"unknown dataset {dataset!r}; expected one of {', '.join(LABEL_FORMATS)}")
    return LABEL_FORMATS[dataset]
