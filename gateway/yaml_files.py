"""The one YAML reader for the files an admin writes: the policy's data and decision cases,
report templates, the vendor inventory.

PyYAML's safe loader, on libyaml where PyYAML was built with it (the wheels are): the same
documents, about eight times faster to read. A gateway's start and each reload read every
decision case file (policies/cases: 0.115 s pure, 0.014 s on libyaml), as do `facegate
policy test` and the console's policy page. Errors are PyYAML's yaml.YAMLError either way.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str | bytes) -> Any:
    """The document in `text`, as yaml.safe_load reads it."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader)
