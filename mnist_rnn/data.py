"""MNIST as sequences: read the images from a source, split them, lay them out as (N, steps, features).

Sources (`data.source`):
- `embedded`: the real MNIST shipped inside this package (gzip IDX + SHA256SUMS), checked on every load.
- `idx`: IDX files, gzip or raw, from `data.dir` or $MNIST_RNN_DATA_DIR.
- `tfds`: tensorflow-datasets, honouring `data.dir` as its data_dir; downloads only with `data.download`.
- `synthetic`: class-dependent patterns for tests; never used unless the config names it.
A missing, truncated or corrupt file is a DataError, never a silent substitute.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mnist_rnn.config import DataConfig
from mnist_rnn.errors import DataError
from mnist_rnn.layouts import input_permutation, make_sequences, to_model_order
from mnist_rnn.mnist import IMAGE_SHAPE, NUM_CLASSES, TEST_SIZE, TRAIN_POOL, Source

DATA_DIR_ENV = "MNIST_RNN_DATA_DIR"


def training_images(cfg: DataConfig) -> int:
    """How many images one training epoch sees (before any stateful remainder is dropped)."""
    return cfg.limit_train or (TRAIN_POOL - cfg.validation)


# IDX magic numbers: 0x0000 then the element type (0x08 = uint8) then the number of dimensions.
_MAGIC = {3: 2051, 1: 2049}
_FILES = {
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}


@dataclass(frozen=True)
class Split:
    """One split: x (N, steps, features) float32 in [0, 1]; y (N,) int32 class ids."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split | None
    test: Split
    description: str
    # The training split's pictures, (N, 28, 28) uint8, kept only when data.augment transforms them.
    train_images: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int]:
        return (int(self.train.x.shape[1]), int(self.train.x.shape[2]))


def embedded_dir() -> Path:
    return Path(str(resources.files("mnist_rnn.embedded") / "mnist"))


# ------------------------------------------------------------------------------------------- IDX


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read one IDX file (gzip or raw) holding uint8 data of `ndim` dimensions, checking its structure."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: truncated or corrupt gzip ({exc}); replace the file") from None
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != _MAGIC[ndim]:
        raise DataError(
            f"{path}: wrong IDX magic number {magic} (expected {_MAGIC[ndim]} for "
            f"{'images' if ndim == 3 else 'labels'}); is this the right file?"
        )
    if len(raw) < header:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes); replace the file")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: holds {len(raw) - header} data bytes but its header {dims} promises {expected}; "
            "the file is truncated or corrupt, replace it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def verify_checksums(directory: Path, sums_file: Path) -> None:
    """Check every file listed in a `sha256sum`-style file."""
    try:
        lines = sums_file.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{sums_file}: cannot read checksums ({exc.strerror})") from None
    for line in filter(None, (ln.strip() for ln in lines)):
        digest, _, name = line.partition("  ")
        target = directory / name.lstrip("*")
        if not target.exists():
            raise DataError(f"{target}: file not found (listed in {sums_file.name}); restore it")
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        if actual != digest:
            raise DataError(
                f"{target}: checksum mismatch (sha256 {actual[:12]}…, expected {digest[:12]}…); "
                "the file is corrupt, restore it (e.g. reinstall mnist-rnn)"
            )


def _find(directory: Path, stem: str) -> Path:
    # Accept the original names with or without .gz, and the common `train-images.idx3-ubyte` variant.
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: no {stem}[.gz] found; the folder must hold the four MNIST IDX files")


def _check_labels(labels: np.ndarray, path: str) -> None:
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{path}: label {int(labels.max())} is out of range 0..9; is this MNIST?")


def read_idx_dir(directory: Path) -> dict[str, np.ndarray]:
    """The four MNIST arrays from an IDX folder; checks SHA256SUMS when the folder has one."""
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; point data.dir (or ${DATA_DIR_ENV}) at the IDX files")
    if (directory / "SHA256SUMS").is_file():
        verify_checksums(directory, directory / "SHA256SUMS")
    arrays = {key: read_idx(_find(directory, stem), ndim) for key, (stem, ndim) in _FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{directory}: {part} images are {images.shape[1:]}, expected 28x28")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{directory}: {part} has {images.shape[0]} images but {labels.shape[0]} labels; "
                "the files do not belong together"
            )
        _check_labels(labels, str(directory / _FILES[f"{part}_labels"][0]))
    return arrays


# --------------------------------------------------------------------------------------- sources


def load_embedded() -> dict[str, np.ndarray]:
    """The four MNIST arrays of the copy shipped inside the package, checked against its SHA256SUMS."""
    directory = embedded_dir()
    if not (directory / "SHA256SUMS").is_file():
        raise DataError(
            f"{directory}: the embedded MNIST is missing from the installation; reinstall mnist-rnn"
        )
    return read_idx_dir(directory)


def _load_idx(cfg: DataConfig) -> dict[str, np.ndarray]:
    directory = cfg.dir or (Path(os.environ[DATA_DIR_ENV]) if os.environ.get(DATA_DIR_ENV) else None)
    if directory is None:
        raise DataError(
            f"data.source is idx but neither data.dir nor ${DATA_DIR_ENV} is set; "
            "point one of them at a folder holding the MNIST IDX files"
        )
    return read_idx_dir(directory)


def _load_tfds(cfg: DataConfig) -> dict[str, np.ndarray]:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            "data.source is tfds but tensorflow-datasets is not installed; "
            "pip install tensorflow-datasets, or use data.source: embedded"
        ) from None
    where = str(cfg.dir) if cfg.dir else "~/tensorflow_datasets"
    try:
        (x_tr, y_tr), (x_te, y_te) = tfds.as_numpy(
            tfds.load(
                "mnist",
                split=["train", "test"],
                batch_size=-1,
                as_supervised=True,
                data_dir=str(cfg.dir) if cfg.dir else None,
                download=cfg.download,
            )
        )
    except Exception as exc:  # tfds raises many types (AssertionError, DatasetNotFoundError, network errors)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "set data.download: true on a machine with internet access"
            if not cfg.download
            else "check the network, or prepare it elsewhere and copy the folder"
        )
        raise DataError(
            f"tensorflow-datasets could not provide mnist from {where} ({reason[:200]}); {hint}, "
            "or use data.source: embedded (the copy shipped with mnist-rnn)"
        ) from None
    arrays = {
        "train_images": np.asarray(x_tr)[..., 0],
        "train_labels": np.asarray(y_tr),
        "test_images": np.asarray(x_te)[..., 0],
        "test_labels": np.asarray(y_te),
    }
    return arrays


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a bright bar whose row band depends on the class: learnable in a few steps.

    For tests only: it exercises the whole pipeline without reading MNIST, and is named in every log.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=n).astype(np.uint8)
    images = rng.integers(0, 64, size=(n, *IMAGE_SHAPE), dtype=np.uint8)
    for c in range(NUM_CLASSES):
        rows = slice(2 * c + 3, 2 * c + 6)
        images[labels == c, rows, 4:24] = 255
    return images, labels


def _load_synthetic(cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    n_train = training_images(cfg)
    n_test = cfg.limit_test or TEST_SIZE
    x_tr, y_tr = synthetic_images(n_train + cfg.validation, seed)
    x_te, y_te = synthetic_images(n_test, seed + 1)
    return {"train_images": x_tr, "train_labels": y_tr, "test_images": x_te, "test_labels": y_te}


def load_dataset(cfg: DataConfig, seed: int) -> Dataset:
    """Read the source named by `cfg`, hold out validation, apply limits and the sequence layout.

    Validation is the last `cfg.validation` images of the 60,000 training images (a fixed split, the same
    for every seed); `limit_train` / `limit_test` keep the first N images of the remaining splits.
    """
    if cfg.source is Source.embedded:
        arrays = load_embedded()
    elif cfg.source is Source.idx:
        arrays = _load_idx(cfg)
    elif cfg.source is Source.tfds:
        arrays = _load_tfds(cfg)
    else:
        arrays = _load_synthetic(cfg, seed)

    images, labels = arrays["train_images"], arrays["train_labels"]
    n_fit = len(labels) - cfg.validation
    if n_fit <= 0:
        raise DataError(f"data.validation={cfg.validation} leaves no training images out of {len(labels)}")
    fit_end = min(n_fit, cfg.limit_train) if cfg.limit_train else n_fit
    n_test = min(len(arrays["test_labels"]), cfg.limit_test or TEST_SIZE)

    order = input_permutation(cfg)  # the same for train, validation and test

    def split(imgs: np.ndarray, labs: np.ndarray) -> Split:
        return Split(to_model_order(make_sequences(imgs, cfg.layout), order), labs.astype(np.int32))

    train = split(images[:fit_end], labels[:fit_end])
    val = split(images[n_fit:], labels[n_fit:]) if cfg.validation else None
    test = split(arrays["test_images"][:n_test], arrays["test_labels"][:n_test])
    kind = "synthetic (NOT MNIST)" if cfg.source is Source.synthetic else f"MNIST ({cfg.source})"
    permuted = f" (permutation_seed {cfg.permutation_seed or 0})" if order is not None else ""
    description = (
        f"{kind}, layout {cfg.layout}{permuted}: {len(train)} train / {len(val) if val else 0} val / "
        f"{len(test)} test, sequences of {train.x.shape[1]} steps x {train.x.shape[2]} features"
    )
    pictures = images[:fit_end] if cfg.augment is not None else None
    if pictures is not None:
        description += "; training images augmented (data.augment)"
    return Dataset(train=train, val=val, test=test, description=description, train_images=pictures)
