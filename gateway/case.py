"""The case context a search is made under: why, for which case, on what legal basis.

What an officer states here reaches the policy, which both engines must read alike. They
do not treat text alike beyond ASCII (OPA's Go lowers "İ" to "i", regorus' Rust to "i̇", so
"KİDNAPPİNG" was an allowed offense to one and an unknown one to the other), so every value
is held to a strict ASCII syntax where it enters (a case session, an X-Facegate-* header)
and refused there with a message naming the field:

    code        purpose, offense, legal basis (and the face attributes of an operation):
                ASCII letters, digits, "_" and "-", at most 64, starting with a letter or
                digit; case is folded and surrounding spaces dropped, so "Homicide " is
                the code "homicide"
    identifier  case number, warrant id: printable ASCII, at most 100 (their columns), no
                space at either end; kept as given (compared exactly with the registry)

The policy input is checked against the same syntax again before any engine sees it
(gateway/policy/contract.py), so a value that bypassed these doors is refused, not judged.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from gateway.errors import MalformedRequest

CODE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
IDENTIFIER_PATTERN = re.compile(r"[!-~](?:[ -~]{0,98}[!-~])?")
CODE_SYNTAX = "ASCII letters, digits, '_' and '-' (at most 64, starting with a letter or digit)"
IDENTIFIER_SYNTAX = "printable ASCII (at most 100 characters, no space at either end)"
# What an officer may pad a value with: ASCII blanks only, so that stripping is the same
# here as in either engine.
_BLANKS = " \t"


def is_code(value: object) -> bool:
    """True for a code in its canonical form (lower case, nothing around it)."""
    return isinstance(value, str) and CODE_PATTERN.fullmatch(value) is not None


def is_identifier(value: object) -> bool:
    return isinstance(value, str) and IDENTIFIER_PATTERN.fullmatch(value) is not None


def canonical_code(text: str, *, what: str) -> str:
    """`text` as a canonical code. Raises ValueError naming `what` when it is not one."""
    stripped = text.strip(_BLANKS)
    # isascii() first: str.lower() maps some letters from outside ASCII into it (U+212A,
    # KELVIN SIGN, lowers to "k").
    folded = stripped.lower() if stripped.isascii() else stripped
    if not is_code(folded):
        raise ValueError(f"{what} must be a code of {CODE_SYNTAX}, not {text!r}")
    return folded


def canonical_identifier(text: str, *, what: str) -> str:
    """`text` without surrounding blanks. Raises ValueError naming `what` when it is not
    an identifier."""
    stripped = text.strip(_BLANKS)
    if not is_identifier(stripped):
        raise ValueError(f"{what} must be {IDENTIFIER_SYNTAX}, not {text!r}")
    return stripped


class LegalBasis(StrEnum):
    WARRANT = "warrant"
    COURT_ORDER = "court_order"
    EXIGENT = "exigent"
    CONSENT = "consent"
    MISSING_PERSON = "missing_person"


# The syntax of each field, by name.
CODE_FIELDS = ("purpose", "offense", "legal_basis")
IDENTIFIER_FIELDS = ("case_number", "warrant_id")


class CaseFields(BaseModel):
    """The five fields of a case context, as plain values: their one definition.

    CaseContext narrows them to what an officer may state (checked where it is stated);
    the policy's context (gateway/policy/contract.py) extends them unchecked, since the
    policy input is held to the strict syntax as a whole before an engine reads it, and a
    value that slipped past the doors must reach that check to be refused on record.
    """

    model_config = ConfigDict(frozen=True)

    purpose: str | None = None
    case_number: str | None = None
    offense: str | None = None
    legal_basis: str | None = None
    warrant_id: str | None = None


class CaseContext(CaseFields):
    """Bound to a case session when it is opened; may be completed by X-Facegate-* headers.

    Every field is optional here: a missing one is the policy's to refuse, with a reason,
    so that the refusal is explained and recorded like any other. A blank one is missing.
    A value that is not of its field's syntax (see the module docstring) is a validation
    error; CaseContext.checked() turns it into a MalformedRequest.
    """

    legal_basis: LegalBasis | None = None

    @field_validator(*CODE_FIELDS, *IDENTIFIER_FIELDS, mode="before")
    @classmethod
    def _strict_syntax(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value  # None, or a type pydantic itself refuses
        return canonical(info.field_name or "value", value)

    @classmethod
    def checked(cls, **fields: Any) -> CaseContext:
        """A CaseContext from what an officer stated. Raises MalformedRequest saying which
        field is wrong and why."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise MalformedRequest(
                "; ".join(_plain(error["msg"]) for error in exc.errors())
            ) from exc

    @classmethod
    def from_store(cls, **fields: Any) -> CaseContext:
        """A context as stored with a session. One stored before codes were checked and
        that is no code is kept as it is, unchecked: the policy input check then refuses
        every request made with it, on record, rather than the session failing to load."""
        try:
            return cls.model_validate(fields)
        except ValidationError:
            return cls.model_construct(**fields)


def canonical(field: str, value: str, *, what: str | None = None) -> str | None:
    """A stated value of a CaseContext field in its canonical form, or None when blank.
    Raises ValueError naming `what` (default: the field) when it is not of the field's
    syntax."""
    what = what or field
    if not value.strip(_BLANKS):
        return None
    if field in CODE_FIELDS:
        code = canonical_code(value, what=what)
        if field == "legal_basis" and code not in set(LegalBasis):
            allowed = ", ".join(basis.value for basis in LegalBasis)
            raise ValueError(f"{what} must be one of: {allowed}, not {value!r}")
        return code
    return canonical_identifier(value, what=what)


def _plain(message: str) -> str:
    # pydantic prefixes a validator's ValueError with "Value error, ".
    return message.removeprefix("Value error, ")
