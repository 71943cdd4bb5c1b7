"""The reference vendor started beside a gateway, on loopback: `facegate serve --refvendor`
and `facegate demo` boot it here.

Kept out of the product package: the `facegate` command imports this module only when it
is asked for the reference vendor, and nothing in `gateway` imports `refvendor`
(tests/refvendor/test_boot.py holds both).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import Settings
from gateway.serving import BackgroundServer
from refvendor.app import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, create_app
from refvendor.azure import DEFAULT_KEY as DEFAULT_AZURE_KEY
from refvendor.compreface import DEFAULT_KEY as DEFAULT_COMPREFACE_KEY
from refvendor.inventory import write_reference_inventory


@contextlib.contextmanager
def reference_backend(
    directory: Path, *, access_key_id: str, secret_access_key: str
) -> Iterator[tuple[str, Path]]:
    """The reference vendor served on a loopback port, on a background thread, until the
    block ends: yields its URL and a vendors file in ``directory`` that sends all three
    protocols to it, attested and labelled as a demo (its attestation says it is not an
    independent test)."""
    app = create_app(access_key_id=access_key_id, secret_access_key=secret_access_key)
    with BackgroundServer(app) as vendor:
        inventory = write_reference_inventory(
            directory,
            vendor.url,
            rekognition=(access_key_id, secret_access_key),
            azure_key=DEFAULT_AZURE_KEY,
            compreface_key=DEFAULT_COMPREFACE_KEY,
            attested_on=datetime.now(UTC).date(),
        )
        yield vendor.url, inventory


@contextlib.contextmanager
def serve_with_reference_vendor(settings: Settings) -> Iterator[tuple[Settings, str]]:
    """``settings`` with the reference vendor as every protocol's backend, and its URL,
    while the block runs (`facegate serve --refvendor`).

    The vendor takes the settings' Rekognition credentials when they name some, else its
    published defaults (it listens on loopback only). Worker processes build their Settings
    from the environment, so FACEGATE_VENDORS_FILE is set to the vendors file too.
    """
    given = settings.rekognition_secret_access_key
    key_id = settings.rekognition_access_key_id or DEFAULT_ACCESS_KEY_ID
    secret = given.get_secret_value() if given else DEFAULT_SECRET_ACCESS_KEY
    with (
        tempfile.TemporaryDirectory(prefix="facegate-") as directory,
        reference_backend(Path(directory), access_key_id=key_id, secret_access_key=secret) as (
            url,
            inventory,
        ),
    ):
        os.environ["FACEGATE_VENDORS_FILE"] = str(inventory)
        yield settings.model_copy(update={"vendors_file": inventory}), url
