"""Loading a policy directory: the revision, the merged data, and errors that name the file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from policy_support import POLICY_DIR

from gateway.policy.bundle import PolicyLoadError, bundle_revision, load_bundle
from gateway.policy.embedded import EmbeddedEngine


def test_the_repository_policy_loads_with_its_data_under_config() -> None:
    bundle = load_bundle(POLICY_DIR)
    assert bundle.module_path == POLICY_DIR / "facegate.rego"
    assert "package facegate" in bundle.module
    assert bundle.config["obligations"]["min_threshold"]["identify"] == 99
    assert "robbery" in bundle.config["identification"]["serious_offenses"]
    assert set(bundle.data_document()) == {"config"}
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", bundle.revision)
    assert bundle_revision(POLICY_DIR) == bundle.revision


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum on PATH")
def test_an_admin_can_reproduce_the_revision_with_sha256sum() -> None:
    listing = subprocess.run(
        "ls facegate.rego data/*.yaml data/*.yml 2>/dev/null | LC_ALL=C sort"
        " | xargs sha256sum | sha256sum",
        shell=True,
        cwd=POLICY_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert load_bundle(POLICY_DIR).revision == "sha256:" + listing.stdout.split()[0]


def test_the_revision_follows_module_and_data_but_not_cases(policy_copy: Path) -> None:
    first = bundle_revision(policy_copy)

    (policy_copy / "cases" / "officers.yaml").write_text("cases: []\n")
    (policy_copy / "data" / "README.md").write_text("not data\n")
    (policy_copy / "data" / ".case.yaml.swp").write_text("editor scratch\n")
    assert bundle_revision(policy_copy) == first

    case_yaml = policy_copy / "data" / "case.yaml"
    case_yaml.write_text(case_yaml.read_text() + "\n# a comment is an edit too\n")
    commented = bundle_revision(policy_copy)
    assert commented != first

    case_yaml.rename(policy_copy / "data" / "case_lists.yaml")
    assert bundle_revision(policy_copy) not in (first, commented)

    module = policy_copy / "facegate.rego"
    module.write_text(module.read_text() + "\n")
    assert bundle_revision(policy_copy) != commented


def test_data_files_may_be_yml_and_empty(policy_copy: Path) -> None:
    (policy_copy / "data" / "extra.yml").write_text("extra_list: [a, b]\n")
    (policy_copy / "data" / "blank.yaml").write_text("# nothing here yet\n")
    assert load_bundle(policy_copy).config["extra_list"] == ["a", "b"]


def test_a_missing_module_is_named(policy_copy: Path) -> None:
    (policy_copy / "facegate.rego").unlink()
    with pytest.raises(PolicyLoadError, match="does not exist") as raised:
        load_bundle(policy_copy)
    assert str(policy_copy / "facegate.rego") in raised.value.message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("purposes: [criminal_investigation\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("valid_from: 2025-01-01\n", "quote dates"),
        ("1: one\n", "keys that are not strings"),
    ],
)
def test_bad_data_is_named(policy_copy: Path, text: str, complaint: str) -> None:
    (policy_copy / "data" / "broken.yaml").write_text(text)
    with pytest.raises(PolicyLoadError, match=complaint) as raised:
        load_bundle(policy_copy)
    assert str(policy_copy / "data" / "broken.yaml") in raised.value.message


def test_a_key_defined_by_two_data_files_names_both(policy_copy: Path) -> None:
    (policy_copy / "data" / "more.yaml").write_text("purposes: [anything]\n")
    with pytest.raises(PolicyLoadError, match="defined in both") as raised:
        load_bundle(policy_copy)
    assert str(policy_copy / "data" / "case.yaml") in raised.value.message
    assert str(policy_copy / "data" / "more.yaml") in raised.value.message


def test_a_module_that_does_not_compile_is_named(policy_copy: Path) -> None:
    module = policy_copy / "facegate.rego"
    module.write_text(module.read_text() + "\nbroken if {\n\tinput.x ==\n}\n")
    with pytest.raises(PolicyLoadError, match="does not compile") as raised:
        EmbeddedEngine(load_bundle(policy_copy))
    # regorus' own message, which points into the admin's file rather than a scratch copy.
    assert raised.value.message.count(str(module)) >= 2, raised.value.message


def test_a_module_without_a_decision_rule_is_refused(policy_copy: Path) -> None:
    (policy_copy / "facegate.rego").write_text(
        "package facegate\n\nimport rego.v1\n\nverdict := {}\n"
    )
    with pytest.raises(PolicyLoadError, match=re.escape("no rule data.facegate.decision")):
        EmbeddedEngine(load_bundle(policy_copy))


def test_the_embedded_engine_evaluates_the_bytes_that_were_hashed(policy_copy: Path) -> None:
    bundle = load_bundle(policy_copy)
    (policy_copy / "facegate.rego").write_text("this is no longer Rego")
    # Built after the file was broken, from the bundle read before: no error.
    EmbeddedEngine(bundle)
