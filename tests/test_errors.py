"""The exception tree drawn in gateway/errors.py is the tree the code has.

Every error the gateway raises on purpose is a FacegateError drawn in that docstring, under
the branch it subclasses; an error defined in its own module names that module in its
entry. A class moved, renamed or added outside the drawing fails here."""

from __future__ import annotations

import importlib
import pkgutil
import re

import gateway
from gateway import errors
from gateway.errors import FacegateError

ENTRY = re.compile(r"── (\w+)")
MODULE = re.compile(r"\((gateway(?:\.\w+)+)\)")


def drawn_tree() -> dict[str, tuple[str | None, str]]:
    """name -> (parent name, module), read from the docstring's drawing."""
    assert errors.__doc__ is not None
    lines = errors.__doc__.split("\n\n")[1].splitlines()
    assert lines[0] == "FacegateError"
    tree: dict[str, tuple[str | None, str]] = {"FacegateError": (None, "gateway.errors")}
    path = ["FacegateError"]
    entries: list[tuple[str, str]] = []  # (name, its text with continuation lines)
    for line in lines[1:]:
        match = ENTRY.search(line)
        if match is None:
            name, text = entries[-1]
            entries[-1] = (name, text + " " + line)
            continue
        depth = match.start() // 4 + 1
        del path[depth:]
        tree[match.group(1)] = (path[-1], "")
        path.append(match.group(1))
        entries.append((match.group(1), line))
    for name, text in entries:
        module = MODULE.search(text)
        tree[name] = (tree[name][0], module.group(1) if module else "gateway.errors")
    return tree


def defined_errors() -> dict[str, type[FacegateError]]:
    """Every FacegateError subclass defined in a gateway module, by name."""
    found: dict[str, type[FacegateError]] = {}
    for module_info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, FacegateError)
                and value.__module__ == module.__name__
            ):
                found[value.__name__] = value
    return found


def test_every_error_is_drawn_under_the_branch_it_subclasses() -> None:
    tree = drawn_tree()
    defined = defined_errors()
    assert set(defined) == set(tree), "errors defined but not drawn, or drawn but not defined"
    for name, (parent, module) in tree.items():
        cls = defined[name]
        assert cls.__module__ == module, f"{name} is drawn in {module}, defined in {cls.__module__}"
        if parent is not None:
            assert cls.__bases__[0] is defined[parent], f"{name} is drawn under {parent}"


def test_the_errors_this_tree_took_in_keep_their_import_paths() -> None:
    from gateway.audit.checkpoint import CheckpointError
    from gateway.audit.merkle import ProofError
    from gateway.audit.query import InvalidQuery
    from gateway.context.activity import ActivityUnavailable
    from gateway.context.face_sources import FaceSourcesUnavailable
    from gateway.policy.bundle import PolicyLoadError
    from gateway.vendors.inventory import InventoryError

    for error in (
        CheckpointError,
        ProofError,
        InvalidQuery,
        ActivityUnavailable,
        FaceSourcesUnavailable,
        PolicyLoadError,
        InventoryError,
    ):
        assert issubclass(error, FacegateError)
    # A proof or note that does not hold up is bad input to a verifier, as it was before.
    assert issubclass(CheckpointError, ValueError) and issubclass(ProofError, ValueError)
    assert InvalidQuery("x").status_code == 400
    assert ActivityUnavailable("x").status_code == 503 == FaceSourcesUnavailable("x").status_code
