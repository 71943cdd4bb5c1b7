"""A policy bundle: the Rego module, its data and the revision that names them.

A policy directory looks like this (decision cases live beside it but are not part of it):

    policies/
      facegate.rego      the one Rego module, package `facegate` (the embedded engine takes one)
      data/*.yaml        lists and numbers, merged into the data document under `data.config`
                         (also *.yml; dotfiles and subdirectories are ignored), with the
                         lists the policy normalises prepared under `data.config.prepared`
      cases/*.yaml       decision cases (see cases.py); not hashed, not loaded here

The revision is "sha256:" + the SHA-256 of a `sha256sum`-style manifest of the module and
the data files, one line per file sorted by relative path, so an admin can reproduce it:

    cd policies && ls facegate.rego data/*.yaml data/*.yml 2>/dev/null \\
        | LC_ALL=C sort | xargs sha256sum | sha256sum
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway import yaml_files
from gateway.context.activity import ActivityReads, activity_reads
from gateway.errors import PolicyUnavailable

MODULE_FILE = "facegate.rego"
DATA_DIR = "data"
DATA_SUFFIXES = (".yaml", ".yml")
# OPA reserves data.facegate for the package itself, so the admin's data lives beside it.
DATA_KEY = "config"
# Under data.config, what load_bundle derives from the data files (prepared_config); no data
# file may define it.
PREPARED_KEY = "prepared"
# The lists the policy matches normalised (`normal`: lower(trim_space(x))), by the name the
# policy reads them under in data.config.prepared and their path in data.config.
PREPARED_SETS: dict[str, tuple[str, ...]] = {
    "purposes": ("purposes",),
    "offenses": ("offenses",),
    "serious_offenses": ("identification", "serious_offenses"),
    "warrant_bases": ("identification", "warrant_bases"),
    "forbidden_attributes": ("attributes", "forbidden"),
    "removed_attributes": ("attributes", "removed_from_responses"),
    "template_options": ("templates", "options"),
    "action_kinds": ("leads", "actions", "kinds"),
    "unverified_actions": ("leads", "actions", "without_verification"),
}
# What Go's strings.TrimSpace and Rust's str::trim (trim_space on OPA and on regorus) take
# off an ASCII string.
_ASCII_SPACE = " \t\n\v\f\r"
DECISION_QUERY = "data.facegate.decision"
# The activity counts the policy reads (policies/facegate.rego, "mass-surveillance
# patterns"): evaluated once per revision, on an empty input, by the engine that serves it.
READS_RULE = "activity_reads"
READS_QUERY = f"data.facegate.{READS_RULE}"


class PolicyLoadError(PolicyUnavailable):
    """A policy bundle or engine could not be loaded; the message names the file or setting."""

    code = "policy_load_error"


@dataclass(frozen=True)
class PolicyBundle:
    """One revision of the policy, read from disk once.

    The module text and data here are the very bytes that were hashed, so an engine built
    from a bundle evaluates exactly what `revision` names, whatever happens to the files later.
    """

    directory: Path
    module_path: Path
    module: str
    # The merged data files and, under PREPARED_KEY, what prepared_config derives from
    # them: what the policy reads as data.config.
    config: Mapping[str, Any]
    revision: str
    # Every file hashed, as (path relative to the directory, UTF-8 text), module first:
    # what is kept of each revision (gateway/policy/revisions.py); revision_of_files() of
    # it is `revision`.
    files: tuple[tuple[str, str], ...] = ()

    def data_document(self) -> dict[str, Any]:
        """The `data` document the engines evaluate against (besides the module's own rules)."""
        return {DATA_KEY: dict(self.config)}


def declared_reads(bundle: PolicyBundle, declared: Any) -> ActivityReads:
    """The activity counts the bundle's policy reads, from what its `activity_reads`
    evaluated to (a list of [scope, stream, window]; None when the policy does not define
    the rule: every count is sent, as to a policy from before the rule). Raises
    PolicyLoadError when it names a count the gateway does not keep: that read would be 0
    whatever was done, and no limit on it would ever refuse."""
    if declared is None:
        return None
    try:
        return activity_reads(declared)
    except ValueError as exc:
        raise PolicyLoadError(f"policy module {bundle.module_path}: {exc}") from exc


def load_bundle(policy_dir: Path) -> PolicyBundle:
    """Read, hash and parse a policy directory. Raises PolicyLoadError naming the bad file."""
    files = _read_policy_files(policy_dir)
    module_rel, module_bytes = files[0]
    module_path = policy_dir / module_rel
    try:
        module = module_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(f"policy module {module_path} is not UTF-8: {exc}") from exc

    config: dict[str, Any] = {}
    defined_in: dict[str, str] = {}
    for rel, content in files[1:]:
        for key, value in _parse_data_file(policy_dir / rel, content).items():
            # Top-level keys are merged, so two files defining one key would silently shadow
            # each other depending on their names; refuse instead.
            if key in config:
                raise PolicyLoadError(
                    f"policy data key {key!r} is defined in both {policy_dir / defined_in[key]}"
                    f" and {policy_dir / rel}"
                )
            config[key] = value
            defined_in[key] = rel
    if PREPARED_KEY in config:
        raise PolicyLoadError(
            f"policy data key {PREPARED_KEY!r} in {policy_dir / defined_in[PREPARED_KEY]} is"
            " reserved: facegate derives data.config.prepared from the other data files"
        )
    config[PREPARED_KEY] = prepared_config(config)

    texts = [(MODULE_FILE, module)]
    for rel, content in files[1:]:
        try:
            texts.append((rel, content.decode("utf-8")))
        except UnicodeDecodeError as exc:
            path = policy_dir / rel
            raise PolicyLoadError(f"policy data file {path} is not UTF-8: {exc}") from exc
    return PolicyBundle(
        directory=policy_dir,
        module_path=module_path,
        module=module,
        config=config,
        revision=_revision(files),
        files=tuple(texts),
    )


def prepared_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The data lists the policy normalises, normalised once here rather than on every
    evaluation (issue 17): each PREPARED_SETS list as {normal(entry): true}, and
    identification.without_warrant as {normal(basis): flag}.

    Only what is normalised here exactly as the Rego `normal` would on both engines: a list
    of ASCII strings (and a mapping of ASCII keys that stay distinct). Anything else is left
    out, and the policy normalises it on each evaluation as before; the decisions are the
    same either way."""
    prepared: dict[str, Any] = {}
    for name, path in PREPARED_SETS.items():
        entries = _at(config, path)
        if isinstance(entries, list) and all(_plain(entry) for entry in entries):
            prepared[name] = {_normal(entry): True for entry in entries}
    flags = _at(config, ("identification", "without_warrant"))
    if isinstance(flags, dict) and all(_plain(basis) for basis in flags):
        normalised = {_normal(basis): flag for basis, flag in flags.items()}
        # Two bases that normalise alike are a conflict the policy reports as an error.
        if len(normalised) == len(flags):
            prepared["warrantless_flags"] = normalised
    return prepared


def _at(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _plain(entry: Any) -> bool:
    return isinstance(entry, str) and entry.isascii()


def _normal(entry: str) -> str:
    # On ASCII text Python's lower() is Go's ToLower and Rust's to_lowercase.
    return entry.strip(_ASCII_SPACE).lower()


def bundle_revision(policy_dir: Path) -> str:
    """The revision of a policy directory as it is now, without parsing it (cheap to poll)."""
    return _revision(_read_policy_files(policy_dir))


def _read_policy_files(policy_dir: Path) -> list[tuple[str, bytes]]:
    """The module first, then the data files sorted by relative path, as (path, bytes)."""
    module_path = policy_dir / MODULE_FILE
    try:
        files = [(MODULE_FILE, module_path.read_bytes())]
    except FileNotFoundError as exc:
        raise PolicyLoadError(f"policy module {module_path} does not exist") from exc
    except OSError as exc:
        raise PolicyLoadError(f"policy module {module_path} cannot be read: {exc}") from exc

    data_dir = policy_dir / DATA_DIR
    if data_dir.is_dir():
        data_paths = sorted(
            path
            for path in data_dir.iterdir()
            # Dotfiles are editors' scratch copies, not data an admin meant to publish.
            if path.suffix in DATA_SUFFIXES and not path.name.startswith(".") and path.is_file()
        )
        for path in data_paths:
            try:
                files.append((path.relative_to(policy_dir).as_posix(), path.read_bytes()))
            except OSError as exc:
                raise PolicyLoadError(f"policy data file {path} cannot be read: {exc}") from exc
    return files


def revision_of_files(files: Mapping[str, str]) -> str:
    """The revision of policy files given as {relative path: UTF-8 text}: how a kept
    revision's text is checked against the revision it is filed under."""
    return _revision([(rel, text.encode("utf-8")) for rel, text in files.items()])


def _revision(files: list[tuple[str, bytes]]) -> str:
    manifest = "".join(
        f"{hashlib.sha256(content).hexdigest()}  {rel}\n"
        for rel, content in sorted(files, key=lambda item: item[0])
    )
    return "sha256:" + hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _parse_data_file(path: Path, content: bytes) -> dict[str, Any]:
    try:
        parsed = yaml_files.safe_load(content)
    except yaml.YAMLError as exc:
        raise PolicyLoadError(f"policy data file {path} is not valid YAML: {exc}") from exc
    if parsed is None:  # an empty or all-comment file contributes nothing
        return {}
    if not isinstance(parsed, dict):
        raise PolicyLoadError(
            f"policy data file {path} must hold a mapping of keys to values,"
            f" not a {type(parsed).__name__}"
        )
    try:
        # The engines take JSON: YAML dates, sets or non-string keys would not survive the
        # trip, and are better refused here than turned into something else silently.
        as_json: dict[str, Any] = json.loads(json.dumps(parsed, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise PolicyLoadError(
            f"policy data file {path} holds a value JSON cannot carry (quote dates): {exc}"
        ) from exc
    if as_json != parsed:
        raise PolicyLoadError(f"policy data file {path} has keys that are not strings; quote them")
    return as_json
