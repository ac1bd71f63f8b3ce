from __future__ import annotations

import json

import pytest

from common.errors import BadRequest
from common.manifest import parse_manifest
from tests.support import TinySplit


def test_id_is_the_hash_of_the_content(tiny_split: TinySplit) -> None:
    manifest = tiny_split.manifest
    assert manifest.id == manifest.content_id()
    assert parse_manifest(manifest.to_json_bytes()) == manifest


def test_any_change_to_the_content_is_refused(tiny_split: TinySplit) -> None:
    body = json.loads(tiny_split.manifest.to_json_bytes())
    body["quantization"]["bits"] = 8
    with pytest.raises(BadRequest, match="does not match its content"):
        parse_manifest(json.dumps(body))


def test_garbage_is_refused() -> None:
    with pytest.raises(BadRequest, match="not a valid split manifest"):
        parse_manifest(b"{}")
