"""A small VOC-format detection set made from Fashion-MNIST items (the `fmnist_voc` dataset).

Each image is a 300x300 RGB canvas with 1-3 tinted Fashion-MNIST items pasted at random
positions and scales; the boxes are the tight boxes of the items' ink. The layout is the
VOCdevkit one (``JPEGImages``, ``Annotations`` XML, ``ImageSets/Main/{trainval,test}.txt``),
so mmdet's ``VOCDataset`` and ``VOCMetric`` read it exactly like Pascal VOC.

Trainval items come from the Fashion-MNIST training split, test items from its test split.
Generation is seeded (same parameters -> same bytes) and atomic (built in a temporary
directory next to the target, then renamed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from qbench.data.fashion_mnist import find_fashion_mnist, load_split
from qbench.io import atomic_directory
from qbench.train.config import is_int, require

FMNIST_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat",
                  "sandal", "shirt", "sneaker", "bag", "ankle_boot")
SUBSET = "FMNIST"  # sub-directory holding the VOC layout (VOCDataset's sub_data_root)
FORMAT_VERSION = 1
INK_THRESHOLD = 40  # pixel value (0-255) above which a resized item counts as ink for its box
SPLIT_SIZES = {"trainval": 60000, "test": 10000}  # images in Fashion-MNIST's train and test splits
ITEM_KEYS = ("min_objects", "max_objects", "min_size", "max_size")  # also keys of detect:
# the run config key of each generation parameter, so that errors name what the user wrote
CONFIG_KEYS = {"trainval": "data.train_size", "test": "data.test_size", "seed": "data.subset_seed",
               "canvas": "fmnist_voc.canvas", **{key: f"detect.{key}" for key in ITEM_KEYS}}


@dataclass(frozen=True)
class FmnistVocSpec:
    """Parameters of one generated set; the directory name is derived from them. Its defaults
    and rules are those of the ``detect:`` keys of the same names; errors (``ConfigError``)
    name the run config key.

    Args:
        trainval: number of trainval images.
        test: number of test images.
        seed: generator seed.
        canvas: canvas side in pixels.
        min_objects: fewest items per image.
        max_objects: most items per image.
        min_size: smallest item side in pixels (the 28x28 item is scaled to it).
        max_size: largest item side in pixels.
    """

    trainval: int = 400
    test: int = 100
    seed: int = 0
    canvas: int = 300
    min_objects: int = 1
    max_objects: int = 3
    min_size: int = 48
    max_size: int = 160

    def __post_init__(self) -> None:
        for key in ("trainval", "test", "canvas", "min_objects", "max_objects", "min_size", "max_size"):
            value = getattr(self, key)
            require(is_int(value) and value >= 1, CONFIG_KEYS[key], f"must be an integer >= 1, got {value!r}")
        require(is_int(self.seed) and self.seed >= 0, CONFIG_KEYS["seed"],
                f"must be an integer >= 0, got {self.seed!r}")
        require(self.min_objects <= self.max_objects, CONFIG_KEYS["min_objects"],
                f"must be <= {CONFIG_KEYS['max_objects']}")
        require(self.min_size <= self.max_size, CONFIG_KEYS["min_size"], f"must be <= {CONFIG_KEYS['max_size']}")
        require(self.max_size <= self.canvas, CONFIG_KEYS["max_size"],
                f"items must fit the {self.canvas}x{self.canvas} canvas")
        for key, most in SPLIT_SIZES.items():
            require(getattr(self, key) <= most, CONFIG_KEYS[key],
                    f"fmnist_voc allows at most {most} images, got {getattr(self, key)}")

    @classmethod
    def from_config(cls, cfg) -> "FmnistVocSpec":
        """The set a detection run config asks for (``data`` sizes and seed, ``detect`` items).

        Args:
            cfg: a ``DetectRunConfig`` with ``data.dataset: fmnist_voc``.
        """
        d, det = cfg.data, cfg.detect
        return cls(trainval=d.train_size, test=d.test_size, seed=d.subset_seed,
                   **{key: getattr(det, key) for key in ITEM_KEYS})

    def key(self) -> str:
        """Short stable hash of the parameters (directory name suffix)."""
        blob = json.dumps({"v": FORMAT_VERSION, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def load_fashion_mnist(split: str, source: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) uint8 and labels (N,) through the classification
    reader (``qbench.data.fashion_mnist``: the same search path, checks and messages).

    Args:
        split: "train" or "test".
        source: directory with the four idx(.gz) files; None searches ``$QBENCH_DATA`` then
            Debian's ``dataset-fashion-mnist`` path.
    """
    images, labels = load_split(find_fashion_mnist(source), split)
    return images.numpy(), labels.numpy()


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _render(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray,
            spec: FmnistVocSpec) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    c = spec.canvas
    # smooth random background: a per-image colour plus weak noise, so images are not trivial
    base = rng.uniform(20, 120, size=3)
    canvas = base + rng.normal(0, 8, size=(c, c, 3))
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        for _attempt in range(20):
            idx = int(rng.integers(len(images)))
            side = int(rng.integers(spec.min_size, spec.max_size + 1))
            x0 = int(rng.integers(0, c - side + 1))
            y0 = int(rng.integers(0, c - side + 1))
            if all(_iou((x0, y0, x0 + side, y0 + side), p) < 0.1 for p in placed):
                break
        else:
            continue
        item = Image.fromarray(images[idx]).resize((side, side), Image.BILINEAR)
        ink = np.asarray(item, dtype=np.float64) / 255.0
        mask = ink > INK_THRESHOLD / 255.0
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        color = rng.uniform(130, 255, size=3)
        region = canvas[y0:y0 + side, x0:x0 + side]
        region[:] = region * (1 - ink[..., None]) + color * ink[..., None]
        box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
        placed.append((x0, y0, x0 + side, y0 + side))
        objects.append((int(labels[idx]), box))
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def _annotation_xml(name: str, size: int, objects: list[tuple[int, tuple[int, int, int, int]]]) -> str:
    parts = ["<annotation>", "  <folder>FMNIST</folder>", f"  <filename>{name}.jpg</filename>",
             f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>",
             "  <segmented>0</segmented>"]
    for label, (x0, y0, x1, y1) in objects:
        # VOC boxes are 1-based inclusive; mmdet subtracts 1 from xmin/ymin when reading
        parts += ["  <object>", f"    <name>{escape(FMNIST_CLASSES[label])}</name>",
                  "    <pose>Unspecified</pose>", "    <truncated>0</truncated>",
                  "    <difficult>0</difficult>",
                  f"    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                  f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>",
                  "  </object>"]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def _write_split(out: Path, split: str, count: int, start: int, spec: FmnistVocSpec,
                 source: Path | None) -> list[str]:
    images, labels = load_fashion_mnist("train" if split == "trainval" else "test", source)
    # one child seed per split keeps the test images independent of the trainval count
    rng = np.random.default_rng([spec.seed, 0 if split == "trainval" else 1])
    names = []
    for i in range(count):
        name = f"{start + i:06d}"
        while True:
            canvas, objects = _render(rng, images, labels, spec)
            if objects:
                break
        Image.fromarray(canvas).save(out / "JPEGImages" / f"{name}.jpg", quality=95)
        (out / "Annotations" / f"{name}.xml").write_text(_annotation_xml(name, spec.canvas, objects))
        names.append(name)
    (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return names


def generate_fmnist_voc(root: Path | str, spec: FmnistVocSpec, source: Path | None = None) -> Path:
    """Build (or reuse) the generated set for ``spec`` under ``root``.

    Args:
        root: parent directory; the set goes to ``root/fmnist_voc-<key>``.
        spec: generation parameters.
        source: directory of the Fashion-MNIST idx files (None: ``load_fashion_mnist``'s search).

    Returns:
        The data root to give mmdet (it holds ``FMNIST/`` with the VOC layout).
    """
    root = Path(root)
    dest = root / f"fmnist_voc-{spec.key()}"
    if (dest / "meta.json").exists():
        return dest
    with atomic_directory(dest) as tmp:
        out = tmp / SUBSET
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (out / sub).mkdir(parents=True)
        _write_split(out, "trainval", spec.trainval, 0, spec, source)
        _write_split(out, "test", spec.test, spec.trainval, spec, source)
        meta = {"format_version": FORMAT_VERSION, "spec": asdict(spec), "classes": list(FMNIST_CLASSES)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return dest
