"""The error tree drawn in ``common/errors.py``, and ``peer_error``, which turns a peer's error reply back into it."""

from __future__ import annotations

import json
import re

import pytest

from common import errors
from common.errors import SplitComputingError
from common.peer_errors import peer_error, reply_error

TREE_LINE = re.compile(r"^(?P<indent>[ |]*)(?:\+-- )?(?P<name>[A-Za-z]+)\s+(?P<status>\d{3})")


def drawn_tree() -> dict[str, tuple[str | None, int]]:
    """class name -> (drawn parent, drawn status), read from the module docstring's picture."""
    doc = errors.__doc__ or ""
    picture = doc[doc.index("::") + 2 :]
    found: dict[str, tuple[str | None, int]] = {}
    stack: list[tuple[int, str]] = []
    for line in picture.splitlines():
        match = TREE_LINE.match(line.rstrip())
        if match is None:
            continue
        depth = len(match["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        found[match["name"]] = (stack[-1][1] if stack else None, int(match["status"]))
        stack.append((depth, match["name"]))
    return found


def test_the_docstring_draws_every_class_with_its_real_parent_and_status() -> None:
    drawn = drawn_tree()
    real = {name: getattr(errors, name) for name in errors.__all__}
    assert set(drawn) == set(real)
    for name, cls in real.items():
        parent, status = drawn[name]
        expected_parent = None if cls is SplitComputingError else cls.__bases__[0].__name__
        assert (parent, status) == (expected_parent, cls.status_code), name


def body(error: SplitComputingError) -> bytes:
    return json.dumps(error.to_dict()).encode()


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n not in ("SplitComputingError", "Unauthorized")])
def test_every_error_a_peer_raises_is_raised_again_as_the_same_class(name: str) -> None:
    cls: type[SplitComputingError] = getattr(errors, name)
    translated = peer_error("edge", cls.status_code, body(cls("the reason")))
    assert type(translated) is cls
    assert "the edge" in translated.message and "the reason" in translated.message


def test_a_refused_token_is_the_peers_configuration_not_the_callers() -> None:
    for status in (401, 403):
        translated = peer_error("robot", status, body(errors.Unauthorized("send a bearer token")))
        assert type(translated) is errors.BadGateway
        assert "token" in translated.message and "send a bearer token" in translated.message


def test_without_our_json_the_status_decides() -> None:
    assert type(peer_error("robot", 409, b"<html>proxy</html>")) is errors.Conflict
    assert type(peer_error("robot", 422, b"")) is errors.UnprocessableModel
    assert type(peer_error("edge", 500, b"Internal Server Error")) is errors.UpstreamUnavailable
    assert type(peer_error("edge", 502, b"bad gateway")) is errors.UpstreamUnavailable
    assert type(peer_error("edge", 418, b"teapot")) is errors.BadGateway


def test_a_code_that_disagrees_with_the_status_is_not_trusted() -> None:
    wrong = json.dumps({"error": "unknown_split", "detail": "x"}).encode()
    assert type(peer_error("edge", 400, wrong)) is errors.BadRequest


def test_reply_error_reads_our_body_and_anything_else() -> None:
    assert reply_error(b'{"error": "not_found", "detail": "no model"}') == ("not_found", "no model")
    assert reply_error('{"status": 409, "error": "unknown_split", "detail": "d"}') == ("unknown_split", "d")
    assert reply_error(b"x" * 1000) == (None, "x" * 300)
    assert reply_error(b"[1, 2]") == (None, "[1, 2]")
