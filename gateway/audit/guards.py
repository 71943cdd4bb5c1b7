"""DDL that makes the database itself refuse to change or remove audit entries.

The hash chain makes tampering detectable; these triggers make the ordinary ways of
tampering fail: any UPDATE or DELETE on ``audit_log`` (and TRUNCATE on PostgreSQL) aborts
with "audit_log is append-only". They do not stop a database owner who drops or disables
them; running the gateway under a role that does not own the table does.

Migration 0001 applies ``install_statements`` and its downgrade ``remove_statements``, so
these statements are frozen as that revision's: changing the text would not touch databases
already migrated and would make fresh ones differ. New guards go in a new migration:
migration 0003 applies ``tree_install_statements`` to ``audit_tree`` and
``audit_checkpoint``, frozen as that revision's in the same way.

The triggers stop the gateway from changing its own log; they cannot stop the owner of the
tables, who can drop them. So in production the gateway connects as a role that owns
nothing and may only read and append (``gateway_role_statements``), and migrations run
as the owner. Signed checkpoints cover what remains: whatever the owner does, a checkpoint
an auditor saved no longer matches.
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


# Migration 0003: the Merkle tree's tables. One PostgreSQL function names the table refused.
TREE_TABLES: Final = ("audit_tree", "audit_checkpoint")


def _sqlite_tree_install(table: str) -> tuple[str, ...]:
    return tuple(
        f"""
        CREATE TRIGGER {table}_refuse_{op} BEFORE {op.upper()} ON {table}
        BEGIN
            SELECT RAISE(ABORT, '{table} is append-only');
        END
        """
        for op in ("update", "delete")
    )


_POSTGRESQL_TREE_FUNCTION: Final = """
    CREATE FUNCTION audit_tree_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $body$
    BEGIN
        RAISE EXCEPTION USING
            MESSAGE = TG_TABLE_NAME || ' is append-only',
            DETAIL = TG_OP || ' on ' || TG_TABLE_NAME || ' refused',
            ERRCODE = 'insufficient_privilege';
    END
    $body$
    """


def _postgresql_tree_install(table: str) -> tuple[str, ...]:
    return (
        f"""
        CREATE TRIGGER {table}_refuse_update_delete
        BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION audit_tree_refuse_change()
        """,
        f"""
        CREATE TRIGGER {table}_refuse_truncate
        BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_refuse_change()
        """,
    )


def tree_install_statements(dialect: str) -> tuple[str, ...]:
    """Migration 0003's guards: ``audit_tree`` and ``audit_checkpoint`` become append-only."""
    if dialect == "sqlite":
        return tuple(s for table in TREE_TABLES for s in _sqlite_tree_install(table))
    if dialect == "postgresql":
        triggers = [s for table in TREE_TABLES for s in _postgresql_tree_install(table)]
        return (_POSTGRESQL_TREE_FUNCTION, *triggers)
    raise ValueError(f"no append-only guards for database dialect {dialect!r}")


def tree_remove_statements(dialect: str) -> tuple[str, ...]:
    if dialect == "sqlite":
        return tuple(
            f"DROP TRIGGER IF EXISTS {table}_refuse_{op}"
            for table in TREE_TABLES
            for op in ("update", "delete")
        )
    if dialect == "postgresql":
        drops = [
            f"DROP TRIGGER IF EXISTS {table}_refuse_{what} ON {table}"
            for table in TREE_TABLES
            for what in ("update_delete", "truncate")
        ]
        return (*drops, "DROP FUNCTION IF EXISTS audit_tree_refuse_change()")
    raise ValueError(f"no append-only guards for database dialect {dialect!r}")


AUDIT_TABLES: Final = ("audit_log", *TREE_TABLES)
# What else the gateway reads and writes in the course of its work (migration 0002).
_WORKING_TABLES: Final = ("principals", "api_keys", "case_sessions", "warrants")


def gateway_role_statements(role: str) -> tuple[str, ...]:
    """PostgreSQL grants for the role the gateway should run as (after ``CREATE ROLE``).

    INSERT and SELECT only on the audit tables: no UPDATE, DELETE or TRUNCATE, and no
    ownership, so the role can neither change entries nor drop the guards. The sequencer
    is an advisory lock, which needs no privilege. ``alembic_version`` is readable so that
    ``facegate serve`` can see the schema is current; migrating is the owner's job.
    """
    if not role.isidentifier():
        raise ValueError(f"{role!r} is not a plain role name")
    audit = ", ".join(AUDIT_TABLES)
    working = ", ".join(_WORKING_TABLES)
    return (
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT ON {audit} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE ON {working} TO {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
        # Migration 0004: each policy revision served is kept, append-only.
        f"GRANT SELECT, INSERT ON policy_revisions TO {role}",
    )
