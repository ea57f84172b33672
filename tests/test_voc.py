"""PASCAL VOC loader on a tiny VOCdevkit tree written here: JPEGs by PIL, XML annotations as in VOC."""

import warnings

import pytest
import torch
from PIL import Image

from fptt_ext.data.images import DatasetNotFoundError
from fptt_ext.data.voc import VOC_CLASSES, voc_collate, voc_detection


def _xml(filename, size, objects):
    w, h = size
    objs = "".join(
        f"""
    <object>
        <name>{name}</name>
        <pose>Unspecified</pose>
        <truncated>0</truncated>
        <difficult>{int(diff)}</difficult>
        <bndbox>
            <xmin>{x1}</xmin>
            <ymin>{y1}</ymin>
            <xmax>{x2}</xmax>
            <ymax>{y2}</ymax>
        </bndbox>
    </object>"""
        for name, (x1, y1, x2, y2), diff in objects
    )
    return f"""<annotation>
    <folder>VOC2007</folder>
    <filename>{filename}</filename>
    <source>
        <database>The VOC2007 Database</database>
        <annotation>PASCAL VOC2007</annotation>
    </source>
    <size>
        <width>{w}</width>
        <height>{h}</height>
        <depth>3</depth>
    </size>
    <segmented>0</segmented>{objs}
</annotation>
"""


def _write_year(base, year, splits, images):
    voc = base / "VOCdevkit" / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (size, mode, objects) in images.items():
        Image.new(mode, size, color=128 if mode == "L" else (200, 30, 60)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(f"{image_id}.jpg", size, objects))
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("voc")
    _write_year(base, "2007", {"trainval": ["000005", "000007"], "test": ["000001"]}, {
        # 200 wide, 100 high: letterboxed into 416 with scale 2.08, 104 px bands above and below
        "000005": ((200, 100), "RGB", [("dog", (10, 20, 110, 70), False), ("person", (50, 5, 60, 95), True)]),
        "000007": ((60, 80), "L", [("car", (1, 1, 60, 80), False)]),  # greyscale JPEG
        "000001": ((100, 100), "RGB", [("tvmonitor", (25, 25, 75, 50), False), ("chair", (5, 5, 9, 9), True)]),
    })
    _write_year(base, "2012", {"trainval": ["2008_000002"]}, {
        "2008_000002": ((50, 40), "RGB", [("bird", (5, 4, 45, 36), False)]),
    })
    bad = tmp_path_factory.mktemp("bad")
    _write_year(bad, "2007", {"test": ["000010", "000011"]}, {
        "000010": ((40, 40), "RGB", [("cat", (10, 10, 10, 30), False), ("cat", (2, 3, 20, 30), False)]),
        "000011": ((40, 40), "RGB", [("unicorn", (1, 1, 20, 20), False)]),
    })
    return base, bad


def test_lengths_and_years(voc_root):
    base, _ = voc_root
    assert len(voc_detection(base, "trainval")) == 3  # VOC07+12
    assert len(voc_detection(base, "trainval", years=("2007",))) == 2
    assert len(voc_detection(base / "VOCdevkit", "test")) == 1  # the VOCdevkit folder itself also works
    with pytest.raises(ValueError, match="VOC2007 has a public test set"):
        voc_detection(base, "test", years=("2007", "2012"))


def test_letterbox_boxes_labels_difficult(voc_root):
    base, _ = voc_root
    ds = voc_detection(base, "trainval", image_size=416)
    img, t = ds[0]  # 000005, 200x100
    assert img.shape == (3, 416, 416) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (2, 4)
    s, top = 416 / 200, 104
    expected = torch.tensor([[10 * s, 20 * s + top, 110 * s, 70 * s + top],
                             [50 * s, 5 * s + top, 60 * s, 95 * s + top]])
    assert torch.allclose(t["boxes"], expected, atol=1e-4)
    assert t["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")] == [11, 14]
    assert t["labels"].dtype == torch.int64 and t["difficult"].tolist() == [False, True]
    assert torch.allclose(img[:, 0], torch.full((3, 416), 0.5))  # the letterbox band
    assert torch.allclose(img[:, 208, 208], torch.tensor([200, 30, 60]) / 255, atol=0.05)  # the (JPEG) image

    img, t = ds[1]  # 000007, greyscale 60x80 -> RGB
    assert img.shape == (3, 416, 416) and torch.allclose(img[0, 208, 208], img[2, 208, 208])
    s, left = 416 / 80, 52
    assert torch.allclose(t["boxes"], torch.tensor([[1 * s + left, 1 * s, 60 * s + left, 80 * s]]), atol=1e-4)

    img, t = ds[2]  # VOC2012's image comes after VOC2007's
    assert t["labels"].tolist() == [VOC_CLASSES.index("bird")]

    stretched = voc_detection(base, "trainval", image_size=64, letterbox=False)
    img, t = stretched[0]
    assert img.shape == (3, 64, 64)
    assert torch.allclose(t["boxes"][0], torch.tensor([10 * 64 / 200, 20 * 64 / 100, 110 * 64 / 200, 70 * 64 / 100]))

    easy = voc_detection(base, "test", keep_difficult=False, image_size=100)
    assert easy[0][1]["labels"].tolist() == [VOC_CLASSES.index("tvmonitor")]


def test_collate_and_v2_transforms(voc_root):
    from torchvision.transforms import v2

    base, _ = voc_root
    ds = voc_detection(base, "trainval", image_size=32, transforms=v2.RandomHorizontalFlip(p=1.0))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=voc_collate)
    images, targets = next(iter(loader))
    assert images.shape == (3, 3, 32, 32) and [len(t["labels"]) for t in targets] == [2, 1, 1]
    plain = voc_detection(base, "trainval", image_size=32)[0][1]["boxes"]
    flipped = targets[0]["boxes"]
    assert torch.allclose(flipped[:, [0, 2]], 32 - plain[:, [2, 0]]) and torch.equal(flipped[:, 1], plain[:, 1])


def test_bad_annotations(voc_root):
    _, bad = voc_root
    ds = voc_detection(bad, "test", image_size=40)
    with pytest.warns(UserWarning, match=r"000010\.xml: skipped the degenerate box"):
        _, t = ds[0]
    assert t["boxes"].tolist() == [[2.0, 3.0, 20.0, 30.0]] and t["labels"].tolist() == [VOC_CLASSES.index("cat")]
    with pytest.raises(ValueError, match=r"000011\.xml: unknown class name 'unicorn'"):
        ds[1]


def test_missing_root(tmp_path, monkeypatch):
    monkeypatch.delenv("FPTT_EXT_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as err:
        voc_detection(tmp_path, "trainval")
    msg = str(err.value)
    assert str(tmp_path) in msg and "VOCdevkit/VOC2012/ImageSets/Main/trainval.txt" in msg
    assert "VOCtrainval_06-Nov-2007.tar" in msg and "VOCtrainval_11-May-2012.tar" in msg
    with pytest.raises(DatasetNotFoundError, match="VOCtest_06-Nov-2007.tar"):
        voc_detection(split="test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="split"):
            voc_detection(tmp_path, "training")


def test_env_var_fallback(voc_root, monkeypatch):
    base, _ = voc_root
    monkeypatch.setenv("FPTT_EXT_DATA", str(base))
    assert len(voc_detection(split="test")) == 1
