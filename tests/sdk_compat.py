"""A stand-in that lets the official CompreFace SDK import next to urllib3 2.

compreface-sdk 0.6.0, its last release, pins requests-toolbelt 0.9.1, whose `_compat`
imports `urllib3.contrib.appengine` at import time; urllib3 2 removed that module, and the
OPA client the gateway needs (opa-python-client 2.1+) requires urllib3 2. The SDK uses only
the toolbelt's MultipartEncoder, which never touches App Engine, so an empty module under
that name is enough: the SDK under test runs unchanged, on the urllib3 the gateway gets.
"""

from __future__ import annotations

import importlib.util
import sys
import types

APPENGINE = "urllib3.contrib.appengine"


def install_appengine_stand_in() -> None:
    """Register an empty urllib3.contrib.appengine if this urllib3 has none (urllib3 2)."""
    if APPENGINE in sys.modules or importlib.util.find_spec(APPENGINE) is not None:
        return
    stand_in = types.ModuleType(APPENGINE, "urllib3 1's App Engine support; absent in urllib3 2")
    # What requests-toolbelt's App Engine adapter would check before using it.
    stand_in.is_appengine_sandbox = lambda: False  # type: ignore[attr-defined]
    sys.modules[APPENGINE] = stand_in
