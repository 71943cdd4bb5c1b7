"""DDL that makes the database itself refuse to change or remove audit entries.

The hash chain makes tampering detectable; these triggers make the ordinary ways of
tampering fail: any UPDATE or DELETE on ``audit_log`` (and TRUNCATE on PostgreSQL) aborts
with "audit_log is append-only". They do not stop a database owner who drops or disables
them; running the gateway under a role that does not own the table does.

Migration 0001 applies ``install_statements`` and its downgrade ``remove_statements``, so
these statements are frozen as that revision's: changing the text would not touch databases
already migrated and would make fresh ones differ. New guards go in a new migration.
"""

from __future__ import annotations

from typing import Final

APPEND_ONLY_MESSAGE: Final = "audit_log is append-only"

_SQLITE_INSTALL: Final = (
    f"""
    CREATE TRIGGER audit_log_refuse_update BEFORE UPDATE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}');
    END
    """,
    f"""
    CREATE TRIGGER audit_log_refuse_delete BEFORE DELETE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}');
    END
    """,
)

_SQLITE_REMOVE: Final = (
    "DROP TRIGGER IF EXISTS audit_log_refuse_delete",
    "DROP TRIGGER IF EXISTS audit_log_refuse_update",
)

# No '%' and no ':' in the function body: the text goes through SQLAlchemy text() and
# asyncpg unchanged only if it holds nothing that looks like a parameter.
_POSTGRESQL_INSTALL: Final = (
    f"""
    CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $body$
    BEGIN
        RAISE EXCEPTION USING
            MESSAGE = '{APPEND_ONLY_MESSAGE}',
            DETAIL = TG_OP || ' on audit_log refused',
            ERRCODE = 'insufficient_privilege';
    END
    $body$
    """,
    """
    CREATE TRIGGER audit_log_refuse_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()
    """,
    """
    CREATE TRIGGER audit_log_refuse_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()
    """,
)

_POSTGRESQL_REMOVE: Final = (
    "DROP TRIGGER IF EXISTS audit_log_refuse_truncate ON audit_log",
    "DROP TRIGGER IF EXISTS audit_log_refuse_update_delete ON audit_log",
    "DROP FUNCTION IF EXISTS audit_log_refuse_change()",
)

_INSTALL: Final = {"sqlite": _SQLITE_INSTALL, "postgresql": _POSTGRESQL_INSTALL}
_REMOVE: Final = {"sqlite": _SQLITE_REMOVE, "postgresql": _POSTGRESQL_REMOVE}


def install_statements(dialect: str) -> tuple[str, ...]:
    """The statements, in order, that make ``audit_log`` append-only on ``dialect``.

    Raises ValueError for a dialect without guards: an unguarded audit log is refused,
    not created quietly.
    """
    try:
        return _INSTALL[dialect]
    except KeyError:
        raise ValueError(f"no append-only guards for database dialect {dialect!r}") from None


def remove_statements(dialect: str) -> tuple[str, ...]:
    """The statements, in order, that undo ``install_statements(dialect)``."""
    try:
        return _REMOVE[dialect]
    except KeyError:
        raise ValueError(f"no append-only guards for database dialect {dialect!r}") from None
