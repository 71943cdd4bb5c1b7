"""The reason codes a policy module can give, read from its text.

A code is the first argument of a `reason("code", ...)` call, or written out as a reason
object's `"code": "..."` (rules every decision evaluates build theirs without the call,
which costs regorus more than the object: issue 17). The metrics' `reason` label is drawn
from these, and tests/policy/test_policy_cases.py checks each has a decision case.
"""

from __future__ import annotations

import re
from typing import Final

_CODE_PATTERNS: Final = (
    re.compile(r"""\breason\(\s*"([a-z][a-z0-9_]{0,63})"\s*,"""),
    re.compile(r""""code":\s*"([a-z][a-z0-9_]{0,63})\""""),
)


def reason_codes(module: str) -> set[str]:
    """Every reason code written in the Rego text `module`."""
    return {code for pattern in _CODE_PATTERNS for code in pattern.findall(module)}
