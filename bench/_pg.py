"""A throwaway PostgreSQL database for one benchmark run (the server the tests use)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "FACEGATE_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Yield the asyncpg URL of an empty database, dropped afterwards."""
    name = f"facegate_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        host = ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
        yield f"postgresql+asyncpg://{host}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def kept_database(named_in: Path) -> str:
    """The asyncpg URL of the database named in the file ``named_in``, created (and named
    there) on first use; never dropped here."""
    if named_in.exists():
        name = named_in.read_text().strip()
    else:
        name = f"facegate_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        named_in.write_text(name + "\n")
    host = ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host}/{name}"
