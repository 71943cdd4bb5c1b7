"""What every adapter does to a vendor's answer before a client sees it.

The vendor is checked, not trusted. Every 2xx answer is read strictly (no NaN, no Infinity,
scores inside the vendor's scale), re-rendered from exactly what was checked, and held to
the obligations:

- matches under the floor are dropped, and past `max_results` the lowest are cut (keeping
  the highest scores: a cut list still answers "who is most like the probe");
- faces past `max_faces` withhold the whole answer rather than cut it: an answer with more
  faces than allowed means the image was a crowd (a probe, a comparison target, an
  enrolment), and keeping some of its faces would hide that from the record and from the
  rules that count faces later, while still answering about the crowd;
- face templates and embeddings are stripped wherever they appear, whatever the policy
  says (the policy refuses the options that ask for them; this is the second line).

A vendor's error answer is replaced by facegate's, in the vendor's shape (see
`VendorRefused`): the vendor's text never reaches the client.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Collection
from typing import Any

from starlette.responses import Response

from gateway.errors import AnswerWithheld, UpstreamError, VendorRefused
from gateway.vendors.base import Outcome, UpstreamResponse

# A flat list of this many numbers or more is a feature vector (dlib's has 128 values,
# FaceNet's and ArcFace's 512); nothing else the three vendors send is one (landmarks are
# points: objects or pairs).
_VECTOR_LENGTH = 32
# Key names, lower-cased with separators removed, that hold templates.
_TEMPLATE_WORDS = ("embedding", "template", "descriptor", "featurevector", "facevector")
_TEMPLATE_NAMES = frozenset({"vector", "vectors", "features", "facefeatures", "calculator"})


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number an answer may hold")


# json.loads with a hook builds a decoder and its scanner on every call: one reads every answer.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _loads(body: bytes) -> Any:
    """`json.loads(body, parse_constant=_reject_constant)`, on the one decoder: the body's
    encoding (UTF-8, 16 or 32, a BOM allowed) detected, then decoded, as json.loads does."""
    return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def read_answer(response: UpstreamResponse, vendor: str) -> Any:
    """The answer's JSON document, or None for an empty body.

    Raises UpstreamError for anything else: bytes that are not JSON, NaN or Infinity (which
    Python's json module would otherwise read as floats, and a floor compare as passing),
    or nesting too deep to read.
    """
    if not response.body:
        return None
    try:
        return _loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UpstreamError(f"{vendor} answered with a body facegate cannot read") from exc


def score(value: object, *, maximum: float) -> float:
    """A similarity or confidence from an answer: a finite number in 0..maximum.

    Raises ValueError otherwise, which the adapter reports as an unreadable answer: a score
    that is not one cannot be held to a floor.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a score is not a number")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= maximum:
        raise ValueError(f"a score of {number} is outside 0..{maximum}")
    return number


def strip_keys(value: Any, keys: Collection[str]) -> int:
    """Remove `keys` from every object nested in `value`, in place; how many were removed."""
    if not keys:
        return 0
    if isinstance(value, dict):
        found = value.keys() & keys
        for key in found:
            del value[key]
        removed = len(found)
        children: Any = value.values()
    elif isinstance(value, list):
        removed, children = 0, value
    else:
        return 0
    for child in children:
        # Only objects and arrays hold keys: a call per number or string was most of the walk.
        if isinstance(child, dict | list):
            removed += strip_keys(child, keys)
    return removed


# An answer's keys are its vendor's field names, a few dozen: each is judged once. Bounded,
# for a vendor that sends others.
@functools.lru_cache(maxsize=1024)
def _is_template_name(key: str) -> bool:
    name = key.lower().replace("_", "").replace("-", "")
    return name in _TEMPLATE_NAMES or any(word in name for word in _TEMPLATE_WORDS)


def _is_vector(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= _VECTOR_LENGTH
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def strip_templates(value: Any) -> int:
    """Remove every face template from `value`, in place; how many were removed.

    A template is a field named like one (embedding, template, descriptor, feature vector)
    or any flat list of numbers long enough to be a feature vector, whatever its name.
    """
    if isinstance(value, dict):
        found = [k for k, v in value.items() if _is_template_name(k) or _is_vector(v)]
        for key in found:
            del value[key]
        removed = len(found)
        children: Any = value.values()
    elif isinstance(value, list):
        removed, children = 0, value
    else:
        return 0
    for child in children:
        if isinstance(child, dict | list):
            removed += strip_templates(child)
    return removed


def keep_best(
    items: list[Any], scored: Callable[[Any], float], *, floor: float | None, cap: int | None
) -> tuple[list[Any], dict[str, int]]:
    """Items at or above the floor, the `cap` highest-scored of them in their order, and what
    was dropped and why (below_threshold, over_result_cap)."""
    scores = [scored(item) for item in items]
    kept = [i for i, s in enumerate(scores) if floor is None or s >= floor]
    dropped: dict[str, int] = {}
    if len(kept) < len(items):
        dropped["below_threshold"] = len(items) - len(kept)
    if cap is not None and len(kept) > cap:
        dropped["over_result_cap"] = len(kept) - cap
        best = set(sorted(kept, key=lambda i: scores[i], reverse=True)[:cap])
        kept = [i for i in kept if i in best]
    return [items[i] for i in kept], dropped


def over_faces(faces: int | None, cap: int | None, *, what: str) -> AnswerWithheld | None:
    """The refusal for an answer holding more faces than `cap`, or None when it does not."""
    if faces is None or cap is None or faces <= cap:
        return None
    return AnswerWithheld(
        f"facegate withheld the vendor's answer: it holds {faces} {what} and at most {cap}"
        " may be returned; the answer is on record",
        reason="too_many_faces",
    )


def rendered(response: UpstreamResponse, document: Any) -> UpstreamResponse:
    """The response re-rendered from the checked document, so that what the client parses
    is exactly what was checked (a duplicate key read one way here and another way by the
    client's parser cannot slip through). Of the vendor's headers only the content type is
    kept."""
    body = b"" if document is None else json.dumps(document).encode()
    # Only the content type goes on: a vendor's own headers could carry text too.
    headers = {k: v for k, v in response.headers.items() if k.lower() == "content-type"}
    return UpstreamResponse(status_code=response.status_code, headers=headers, body=body)


def is_success(response: UpstreamResponse) -> bool:
    return 200 <= response.status_code < 300


def refused(
    response: UpstreamResponse,
    vendor: str,
    *,
    code_of: Callable[[Any], object],
    known: Callable[[str], bool],
) -> Outcome:
    """The outcome of a vendor's error answer: withheld, replaced by facegate's error.

    The vendor's status is kept when it is an error status (anything else, a redirect say,
    is a bad gateway), and its error code when `known` says the vendor documents it; its
    message is never passed on.
    """
    status = response.status_code if 400 <= response.status_code < 600 else 502
    code: str | None = None
    try:
        found = code_of(_loads(response.body))
        if isinstance(found, str | int) and not isinstance(found, bool) and known(str(found)):
            code = str(found)
    except (ValueError, UnicodeDecodeError, RecursionError, AttributeError, TypeError):
        code = None
    error = VendorRefused(
        f"{vendor} refused the request (HTTP {response.status_code}"
        + (f", {code})" if code else ")"),
        status=status,
        vendor_code=code,
    )
    return Outcome(response=response, withheld=error)


def answer_response(outcome: Outcome, *, headers: dict[str, str], media_type: str) -> Response:
    """The checked answer as sent to the client, with the vendor's own `headers` added (its
    request-id header, say) and `media_type` where the answer names no content type."""
    return Response(
        outcome.response.body,
        status_code=outcome.response.status_code,
        headers={**outcome.response.headers, **headers},
        media_type=media_type,
    )
