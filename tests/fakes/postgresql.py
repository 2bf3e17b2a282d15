"""The PostgreSQL server the store tests use, when NEARMISS_TEST_DATABASE_URL names one.

Each test gets a schema of its own (the URL's `options=-csearch_path=...`), dropped after
it, so tests never see each other's tables, nor each other's advisory locks (their keys
include the schema).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

TEST_DATABASE_URL = os.environ.get("NEARMISS_TEST_DATABASE_URL", "")
SKIP_REASON = ("NEARMISS_TEST_DATABASE_URL is not set: the PostgreSQL store tests need a "
               "server (README, Development)")
needs_postgresql = pytest.mark.skipif(not TEST_DATABASE_URL, reason=SKIP_REASON)


def with_schema(url: str, schema: str) -> str:
    """`url` with its tables (and search path) in `schema`."""
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}) \
        .render_as_string(hide_password=False)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A store URL on the test server whose tables go in a new schema, dropped afterwards."""
    if not TEST_DATABASE_URL:
        pytest.skip(SKIP_REASON)
    schema = f"nearmiss_test_{uuid4().hex[:12]}"
    admin = create_engine(TEST_DATABASE_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        yield with_schema(TEST_DATABASE_URL, schema)
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))  # a leaked session fails it
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        admin.dispose()
