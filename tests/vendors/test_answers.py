"""The shared checks on a vendor's answer: strict reading, scores, cuts, templates."""

from __future__ import annotations

import json

import pytest

from gateway.errors import UpstreamError, VendorRefused
from gateway.vendors.answers import (
    keep_best,
    over_faces,
    read_answer,
    refused,
    score,
    strip_keys,
    strip_templates,
)
from gateway.vendors.base import UpstreamResponse


def answer(body: bytes, status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status, {}, body)


@pytest.mark.parametrize(
    "body", [b"NaN", b'{"a": Infinity}', b'{"a": -Infinity}', b"{", b"\xff", b"[" * 50_000]
)
def test_an_answer_is_read_strictly(body: bytes) -> None:
    with pytest.raises(UpstreamError):
        read_answer(answer(body), "V")


def test_an_empty_answer_is_none_and_json_is_read() -> None:
    assert read_answer(answer(b""), "V") is None
    assert read_answer(answer(b'{"a": [1.5]}'), "V") == {"a": [1.5]}


@pytest.mark.parametrize(
    "body",
    [
        '{"a": ["\u00e9", 1e5, -0.0, null]}'.encode("utf-16"),
        '{"a": "\u00e9"}'.encode("utf-16-le"),
        '{"a": "\u00e9"}'.encode("utf-32"),
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate, passed as json.loads passes it
        b'"\\ud800"',
    ],
    ids=["utf-16", "utf-16-le", "utf-32", "utf-8-bom", "encoded-surrogate", "escaped-surrogate"],
)
def test_an_answer_is_read_as_json_loads_reads_it(body: bytes) -> None:
    assert read_answer(answer(body), "V") == json.loads(body)


def test_keys_are_stripped_at_every_depth_and_counted() -> None:
    document = {
        "Age": 1,
        "Faces": [{"Age": {"Age": 2}, "Keep": [[{"Age": 3, "x": 1}]]}, 5, "s", None],
        "x": {"Gender": True},
    }
    # The inner Age goes with the outer one, uncounted.
    assert strip_keys(document, ["Age", "Gender"]) == 4
    assert document == {"Faces": [{"Keep": [[{"x": 1}]]}, 5, "s", None], "x": {}}
    assert strip_keys(document, frozenset()) == 0


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -0.1, 100.1, True, "99", None])
def test_a_score_is_a_finite_number_on_the_vendors_scale(value: object) -> None:
    with pytest.raises(ValueError):
        score(value, maximum=100.0)


def test_the_best_are_kept_in_their_order() -> None:
    items = [{"s": s} for s in (99.1, 99.9, 40.0, 99.5, 99.7)]
    kept, dropped = keep_best(items, lambda i: i["s"], floor=99.0, cap=2)
    assert [i["s"] for i in kept] == [99.9, 99.7]
    assert dropped == {"below_threshold": 1, "over_result_cap": 2}
    assert keep_best(items, lambda i: i["s"], floor=None, cap=None) == (items, {})


def test_templates_are_stripped_by_name_and_by_shape() -> None:
    document = {
        "faces": [
            {
                "box": {"x": 1},
                "embedding": [0.1] * 128,
                "Face_Template": "base64...",
                "descriptorV2": {"v": 1},
                "unnamed": [0.5] * 512,
                "landmarks": [[1, 2]] * 68,
                "Landmarks": [{"Type": "eyeLeft", "X": 0.1, "Y": 0.2}] * 30,
                "short": [1.0, 2.0, 3.0],
                "deeper": [[{"FaceTemplate": "x", "k": 1}]],
            }
        ]
    }
    assert strip_templates(document) == 5
    assert set(document["faces"][0]) == {"box", "landmarks", "Landmarks", "short", "deeper"}
    assert document["faces"][0]["deeper"] == [[{"k": 1}]]


def test_faces_past_the_cap_withhold_and_none_is_no_cap() -> None:
    assert over_faces(3, 3, what="faces") is None
    assert over_faces(5, None, what="faces") is None
    withheld = over_faces(4, 3, what="faces enrolled")
    assert withheld is not None and withheld.reason == "too_many_faces"
    assert "holds 4 faces enrolled" in withheld.message


def test_a_vendors_error_keeps_its_status_and_known_code_only() -> None:
    def code_of(document: object) -> object:
        return document.get("code") if isinstance(document, dict) else None

    outcome = refused(
        answer(b'{"code": "Known", "message": "secret"}', 404),
        "V",
        code_of=code_of,
        known={"Known"}.__contains__,
    )
    error = outcome.withheld
    assert isinstance(error, VendorRefused)
    assert (error.status, error.vendor_code) == (404, "Known") and "secret" not in error.message

    redirect = refused(answer(b"<html>", 302), "V", code_of=code_of, known=lambda _: True)
    assert isinstance(redirect.withheld, VendorRefused)
    assert (redirect.withheld.status, redirect.withheld.vendor_code) == (502, None)
