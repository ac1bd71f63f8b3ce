"""Fidelity of head -> quantize -> dequantize -> tail against the float model, one cut and the whole table."""

from __future__ import annotations

import numpy as np
import pytest

from common.manifest import TensorRange
from model_splitter.graph.analysis import analyse_split_points
from model_splitter.quantize.fidelity import (
    SQNR_CAP_DB,
    PointFidelity,
    fidelity_table,
    measure_fidelity,
    output_agreement,
    roundtrip,
)
from model_splitter.quantize.images import calibration_sets
from model_splitter.services.models import default_preprocessing
from model_splitter.store.samples import calibration_photos
from tests.support import record_of, tiny_classifier

MODEL = tiny_classifier()
SETS = calibration_sets(None, default_preprocessing((1, 3, 32, 32)), calibration_photos())
IMAGES = SETS.held_out
POINTS = analyse_split_points(MODEL, (1, 3, 32, 32))


@pytest.fixture(scope="module")
def table() -> list[PointFidelity]:
    record = record_of(POINTS, (1, 3, 32, 32), 10)
    return fidelity_table(MODEL, record, SETS, (2, 4, 8, 16, 32), "mse")


def test_32_bits_is_the_float_model() -> None:
    fidelity = measure_fidelity(MODEL, ["r2"], 32, [], list(IMAGES))
    assert fidelity.top1_agreement == 1.0 and fidelity.cosine == pytest.approx(1.0, abs=1e-6)
    assert fidelity.sqnr_db == SQNR_CAP_DB and fidelity.images == 32


def test_fewer_bits_lose_fidelity() -> None:
    clip = [TensorRange(name="r2", lo=0.0, hi=4.0)]
    by_bits = {bits: measure_fidelity(MODEL, ["r2"], bits, clip, IMAGES) for bits in (2, 8, 16)}
    assert by_bits[2].sqnr_db < by_bits[8].sqnr_db < by_bits[16].sqnr_db < SQNR_CAP_DB
    assert by_bits[2].cosine < by_bits[8].cosine <= 1.0
    assert by_bits[16].top1_agreement == 1.0


def test_table_covers_every_point_and_bit_width(table: list[PointFidelity]) -> None:
    assert [row.label for row in table] == ["stem.conv", "stem", "block.conv", "block", "pool", "flatten"]
    for row in table:
        assert list(row.by_bits) == [2, 4, 8, 16, 32]
        exact = row.by_bits[32].fidelity
        assert (exact.top1_agreement, exact.cosine, exact.sqnr_db) == (1.0, 1.0, SQNR_CAP_DB)
        sqnr = [row.by_bits[bits].fidelity.sqnr_db for bits in (2, 4, 8, 16)]
        assert sqnr == sorted(sqnr), row.label
        assert all(0.0 <= row.by_bits[b].fidelity.top1_agreement <= 1.0 for b in row.by_bits)
        assert [r.name for r in row.by_bits[4].ranges] == row.tensors
        assert (row.by_bits[4].fidelity.images, row.by_bits[4].fidelity.fit_images) == (32, 16)
        # Coded payloads are never longer than the packed codes (a frame sends whichever is shorter).
        packed = [-(-int(np.prod(p.shape)) * bits // 8) for p in POINTS if p.label == row.label for bits in (2, 4, 8)]
        coded = [row.by_bits[bits].fidelity.coded_bytes for bits in (2, 4, 8)]
        assert all(c is not None and 0 < c <= p for c, p in zip(coded, packed, strict=True)), row.label
        assert row.by_bits[16].fidelity.coded_bytes is None


def test_table_agrees_with_a_direct_measurement(table: list[PointFidelity]) -> None:
    # The table quantizes stored activations of the held-out images and runs only the tail; measuring the cut from
    # scratch on those images with the same ranges must give the same numbers.
    row = next(row for row in table if row.label == "block")
    for bits in (2, 4):
        direct = measure_fidelity(MODEL, row.tensors, bits, row.by_bits[bits].ranges, IMAGES)
        listed = row.by_bits[bits].fidelity
        assert direct.top1_agreement == listed.top1_agreement
        assert direct.cosine == pytest.approx(listed.cosine, abs=1e-6)
        assert direct.sqnr_db == pytest.approx(listed.sqnr_db, abs=1e-3)


def test_roundtrip_and_agreement_helpers() -> None:
    x = np.linspace(-1, 3, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert np.array_equal(roundtrip(x, 32, None), x)
    per_channel = TensorRange(name="t", lo=-1.0, hi=3.0, channel_lo=[-1.0, 0.0], channel_hi=[1.0, 3.0])
    y = roundtrip(x, 8, per_channel)
    assert np.all(np.abs(y - np.clip(x, [[[[-1.0]], [[0.0]]]], [[[[1.0]], [[3.0]]]])) <= 3.0 / 255)
    reference = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert output_agreement(reference, reference) == (1.0, 1.0)
    assert output_agreement(reference, np.array([[0.0, 1.0], [0.0, 2.0]])) == (0.5, 0.5)
