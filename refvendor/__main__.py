"""Serve the reference vendor: ``python -m refvendor --host 127.0.0.1 --port 9090``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
from collections.abc import Sequence

import uvicorn

from refvendor.app import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, create_app

logger = logging.getLogger("refvendor")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m refvendor",
        description="A local Amazon Rekognition look-alike with real (dlib) face matching.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID)
    parser.add_argument("--secret-access-key", default=DEFAULT_SECRET_ACCESS_KEY)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    if args.secret_access_key == DEFAULT_SECRET_ACCESS_KEY and not _is_loopback(args.host):
        logging.basicConfig()
        logger.warning(
            "refvendor is a local test vendor, listening on %s with its published default"
            " secret; pass --secret-access-key",
            args.host,
        )
    app = create_app(
        access_key_id=args.access_key_id,
        secret_access_key=args.secret_access_key,
        region=args.region,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
