"""Data: the embedded real MNIST, IDX parsing and its failure modes, splits and layouts."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mnist_rnn.config import DataConfig
from mnist_rnn.data import DATA_DIR_ENV, load_dataset, read_idx, read_idx_dir, verify_checksums
from mnist_rnn.errors import DataError
from mnist_rnn.layouts import make_sequences
from mnist_rnn.mnist import Layout, Source

# Published sanity figures for the real MNIST (shared/data/mnist/README.md).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def embedded() -> dict[str, np.ndarray]:
    from mnist_rnn.data import load_embedded

    return load_embedded()


def test_embedded_copy_is_the_real_mnist(embedded: dict[str, np.ndarray]) -> None:
    assert embedded["train_images"].shape == (60000, 28, 28)
    assert embedded["test_images"].shape == (10000, 28, 28)
    assert np.bincount(embedded["train_labels"]).tolist() == TRAIN_COUNTS
    assert np.bincount(embedded["test_labels"]).tolist() == TEST_COUNTS
    pixels = embedded["train_images"].astype(np.float64) / 255.0
    assert pixels.mean() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std() == pytest.approx(0.3081, abs=1e-4)


def test_default_dataset_is_rows_of_real_mnist_with_a_fixed_validation_tail(embedded) -> None:
    ds = load_dataset(DataConfig(), seed=0)
    assert ds.train.x.shape == (55000, 28, 28) and ds.train.x.dtype == np.float32
    assert ds.val is not None and ds.val.x.shape == (5000, 28, 28)
    assert ds.test.x.shape == (10000, 28, 28)
    assert ds.train.x.min() >= 0.0 and ds.train.x.max() == 1.0
    # validation is the last 5,000 training images, untouched by the seed
    np.testing.assert_array_equal(ds.val.y, embedded["train_labels"][55000:])
    np.testing.assert_array_equal(ds.train.x[0], embedded["train_images"][0] / np.float32(255))
    assert "MNIST (embedded)" in ds.description


def test_limits_keep_the_first_images() -> None:
    ds = load_dataset(DataConfig(validation=100, limit_train=300, limit_test=50), seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (300, 100, 50)


def test_rows_layout_is_one_image_row_per_step() -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    seq = make_sequences(images, Layout.rows)
    assert seq.shape == (2, 28, 28) and seq.dtype == np.float32
    np.testing.assert_allclose(seq[1, 5], images[1, 5] / 255.0)


def test_synthetic_is_only_used_when_asked_and_says_so() -> None:
    assert DataConfig().source is Source.embedded
    ds = load_dataset(
        DataConfig(source=Source.synthetic, validation=10, limit_train=20, limit_test=10), seed=1
    )
    assert "NOT MNIST" in ds.description
    assert len(ds.train) == 20


def test_checksum_mismatch_is_detected(embedded_copy: Path) -> None:
    target = embedded_copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(target.read_bytes())
    data[-10] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum mismatch"):
        verify_checksums(embedded_copy, embedded_copy / "SHA256SUMS")


def test_truncated_gzip_is_a_clear_error(embedded_copy: Path) -> None:
    target = embedded_copy / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        read_idx(target, 3)


def test_wrong_magic_and_wrong_size_are_reported(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.write_bytes((2049).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes(5))
    with pytest.raises(DataError, match="wrong IDX magic number 2049"):
        read_idx(labels, 3)  # a label file where images are expected
    short = tmp_path / "short"
    short.write_bytes((2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(4))
    with pytest.raises(DataError, match="promises 10"):
        read_idx(short, 1)


def _write_raw_idx_dir(target: Path, source: Path) -> None:
    """Ungzipped IDX files (as some mirrors ship them), without a SHA256SUMS."""
    target.mkdir()
    for gz in source.glob("*.gz"):
        (target / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))


def test_idx_source_reads_raw_files_from_the_environment_variable(
    tmp_path: Path, embedded_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    _write_raw_idx_dir(raw, embedded_copy)
    monkeypatch.setenv(DATA_DIR_ENV, str(raw))
    ds = load_dataset(DataConfig(source=Source.idx, limit_test=10), seed=0)
    assert len(ds.train) == 55000 and "MNIST (idx)" in ds.description


def test_idx_source_without_a_folder_says_how_to_point_at_one() -> None:
    with pytest.raises(DataError, match=f"neither data.dir nor \\${DATA_DIR_ENV}"):
        load_dataset(DataConfig(source=Source.idx), seed=0)


def test_labels_out_of_range_are_rejected(tmp_path: Path, embedded_copy: Path) -> None:
    raw = tmp_path / "raw"
    _write_raw_idx_dir(raw, embedded_copy)
    labels = raw / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8] = 11
    labels.write_bytes(bytes(data))
    with pytest.raises(DataError, match="label 11 is out of range"):
        read_idx_dir(raw)


def test_mismatched_image_and_label_counts_are_rejected(tmp_path: Path, embedded_copy: Path) -> None:
    raw = tmp_path / "raw"
    _write_raw_idx_dir(raw, embedded_copy)
    labels = raw / "t10k-labels-idx1-ubyte"
    data = labels.read_bytes()
    labels.write_bytes(data[:4] + (9999).to_bytes(4, "big") + data[8:-1])
    with pytest.raises(DataError, match="10000 images but 9999 labels"):
        read_idx_dir(raw)


def test_tfds_without_data_or_download_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(source=Source.tfds, dir=tmp_path / "tfds"), seed=0)
    message = str(info.value)
    assert "tensorflow-datasets could not provide mnist" in message
    assert "data.download: true" in message and "data.source: embedded" in message
