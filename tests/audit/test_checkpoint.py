"""Signed notes and checkpoints against the published vectors, and every way to break one."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from gateway.audit.checkpoint import Checkpoint, CheckpointError, Signer, Verifier, open_note

# golang.org/x/mod/sumdb/note's documented example: Ed25519 is deterministic, so signing
# this text with this key must give this note byte for byte.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"  # noqa: E501
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"  # noqa: E501
)
# c2sp.org/signed-note's example.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"  # noqa: E501
)


def test_go_reference_signature_byte_for_byte() -> None:
    signer = Signer.parse(GO_SKEY)
    assert str(signer) == GO_SKEY
    assert str(signer.verifier) == GO_VKEY
    assert signer.sign_note(GO_TEXT) == GO_NOTE
    assert open_note(GO_NOTE, Verifier.parse(GO_VKEY)) == GO_TEXT


def test_c2sp_spec_example_verifies() -> None:
    assert open_note(SPEC_NOTE, Verifier.parse(SPEC_VKEY)) == "This is an example message.\n"


def test_checkpoint_round_trip_and_format() -> None:
    signer = Signer.generate("gov.example/facegate")
    checkpoint = Checkpoint(origin="gov.example/facegate", size=42, root_hash=bytes(range(32)))
    note = checkpoint.sign(signer)
    root = base64.b64encode(bytes(range(32))).decode()
    assert note.startswith(f"gov.example/facegate\n42\n{root}\n\n\u2014 gov.example/facegate ")
    assert Checkpoint.open(note, signer.verifier) == checkpoint
    # A verifier key string survives a round trip through text.
    assert Verifier.parse(str(signer.verifier)) == signer.verifier


def test_other_key_is_refused_by_name() -> None:
    ours = Signer.generate("gov.example/facegate")
    theirs = Signer.generate("gov.example/facegate")
    note = Checkpoint("gov.example/facegate", 3, bytes(32)).sign(theirs)
    with pytest.raises(CheckpointError, match="not signed by the key"):
        Checkpoint.open(note, ours.verifier)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda n: n.replace("\n42\n", "\n43\n"), "does not verify"),
        (lambda n: n.replace("\u2014 ", "- "), "does not start with"),
        (lambda n: n.split("\n\n")[0] + "\n", "not a signed note"),
        (lambda n: n[:-10] + "\n", "base64|does not verify"),
        (lambda n: "", "not a signed note"),
        (lambda n: n.replace("\n42\n", "\n042\n"), "does not verify"),
    ],
)
def test_malformed_or_altered_checkpoints_are_refused(mangle: object, message: str) -> None:
    signer = Signer.generate("gov.example/facegate")
    note = Checkpoint("gov.example/facegate", 42, bytes(32)).sign(signer)
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.open(mangle(note), signer.verifier)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("origin\n012\nAAAA\n", "not a decimal"),
        ("origin\n12\nAAAA\n", "not 32 bytes"),
        ("origin\n12\n", "origin, a tree size"),
        ("\n12\n" + base64.b64encode(bytes(32)).decode() + "\n", "origin line is empty"),
    ],
)
def test_malformed_checkpoint_bodies(body: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.parse_body(body)


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.key"
    first = Signer.load_or_create(path, "gov.example/facegate")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = Signer.load_or_create(path, "gov.example/facegate")
    assert again.verifier == first.verifier
    assert "PRIVATE" not in repr(first)
    with pytest.raises(CheckpointError, match=r"not for 'other\.example/log'"):
        Signer.load_or_create(path, "other.example/log")
    path.write_text("garbage\n")
    with pytest.raises(CheckpointError, match=r"log\.key"):
        Signer.load_or_create(path, "gov.example/facegate")
