"""The product package stands alone: no gateway module imports the reference vendor or the
demo at import (`facegate serve --refvendor` and `facegate demo` load them on demand)."""

from __future__ import annotations

import subprocess
import sys

IMPORT_EVERY_GATEWAY_MODULE = """
import importlib, pkgutil, sys
import gateway
for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
    importlib.import_module(module.name)
from gateway.cli import app  # the `facegate` command, every subcommand registered
print(sorted(name for name in sys.modules if name.split(".")[0] == "refvendor"))
"""


def test_no_gateway_module_imports_refvendor() -> None:
    # A process of its own: this one imported refvendor for other tests.
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_GATEWAY_MODULE],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stdout
