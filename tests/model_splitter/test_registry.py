from __future__ import annotations

import threading
from pathlib import Path

from model_splitter.store.registry import Registry
from tests.support import TinySplit


def test_concurrent_writers_of_the_same_split_leave_one_complete_copy(tmp_path: Path, tiny_split: TinySplit) -> None:
    registry = Registry(tmp_path)
    manifest = tiny_split.manifest
    head = tiny_split.registry.split_file(manifest.id, "head.onnx").read_bytes()
    tail = tiny_split.registry.split_file(manifest.id, "tail.onnx").read_bytes()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def write() -> None:
        barrier.wait()
        try:
            registry.save_split(manifest, head, tail)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [m.id for m in registry.list_splits()] == [manifest.id]
    assert registry.split_file(manifest.id, "head.onnx").read_bytes() == head
    assert list((tmp_path / "staging").iterdir()) == []


def test_an_interrupted_write_is_never_visible_and_is_cleared_on_restart(tmp_path: Path, tiny_split: TinySplit) -> None:
    registry = Registry(tmp_path)
    half_written = tmp_path / "staging" / "0123"
    half_written.mkdir()
    (half_written / "head.onnx").write_bytes(b"partial")
    assert registry.list_splits() == []
    Registry(tmp_path)
    assert not half_written.exists()


def test_model_records_survive_a_new_registry(tmp_path: Path, tiny_split: TinySplit) -> None:
    record = tiny_split.registry.get_model(tiny_split.manifest.model_id)
    registry = Registry(tmp_path)
    registry.save_model(record, b"onnx bytes", ["a", "b"])
    reopened = Registry(tmp_path)
    assert reopened.get_model(record.id) == record
    assert reopened.model_labels(record.id) == ["a", "b"]
