"""The store as the last release before versioned migrations left it (its schema 2).

A store created by that release, or the one before (schema 1), is not built again: it is
brought to this schema by `migrations.adopt` and stamped with this revision.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Text compares and sorts byte by byte on PostgreSQL too, as in SQLite, whatever the
# database's collation: ids, sources and ISO times order the same on both backends.
Str = sa.String().with_variant(sa.String(collation="C"), "postgresql")

APPEND_ONLY = ("raw_responses", "audit")


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", Str, primary_key=True),
                    sa.Column("value", sa.Text))
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", Str, nullable=False),
        sa.Column("finished_at", Str),
        sa.Column("status", Str, nullable=False),
        sa.Column("summary", sa.JSON),
    )
    op.create_table(
        "raw_responses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", Str, nullable=False),
        sa.Column("response_id", Str, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_hash", Str, nullable=False),
        sa.Column("submitted_at", Str, nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("first_seen", Str, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.UniqueConstraint("source", "response_id", "version"),
    )
    op.create_table("counters", sa.Column("name", Str, primary_key=True),
                    sa.Column("value", sa.Integer, nullable=False))
    op.create_table(
        "response_links",
        sa.Column("source", Str, primary_key=True),
        sa.Column("response_id", Str, primary_key=True),
        sa.Column("report_id", Str, nullable=False),
        sa.Column("linked_at", Str, nullable=False),
        sa.Column("how", Str, nullable=False),
    )
    op.create_index("ix_response_links_report_id", "response_links", ["report_id"])
    op.create_table(
        "reports",
        sa.Column("report_id", Str, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("data_hash", Str, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("updated_at", Str, nullable=False),
    )
    op.create_table(
        "entity_state",
        sa.Column("kind", Str, primary_key=True),
        sa.Column("entity_id", Str, primary_key=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("updated_at", Str, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("key", Str, primary_key=True),
        sa.Column("kind", Str, nullable=False),
        sa.Column("entity_id", Str, nullable=False),
        sa.Column("recipients", sa.JSON, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body_text", sa.Text, nullable=False),
        sa.Column("body_html", sa.Text),
        sa.Column("created_at", Str, nullable=False),
        sa.Column("sent_at", Str),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", Str),
    )
    op.create_index("ix_outbox_entity_id", "outbox", ["entity_id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", Str, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("entity", Str, nullable=False),
        sa.Column("entity_id", Str, nullable=False),
        sa.Column("event", Str, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("details", sa.JSON),
    )
    op.create_index("ix_audit_entity_id", "audit", ["entity_id"])

    refuse_changes(op.get_bind().dialect.name)
    # Releases before versioned migrations read this row and refuse a store whose schema is
    # newer than theirs; a later revision that they would misread raises it above 2.
    op.execute(sa.text("INSERT INTO meta (key, value) VALUES ('schema_version', '2')"))


def refuse_changes(dialect: str) -> None:
    """Triggers that make `raw_responses` and `audit` append-only: UPDATE and DELETE (and on
    PostgreSQL TRUNCATE, which row triggers do not see) fail with "<table> is append-only"."""
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON "
                           f"{table} BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END")
        return
    # 23001 restrict_violation: the store's error handling recognises the refusal by it.
    op.execute("""
        CREATE FUNCTION nearmiss_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END $$""")
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON "
                       f"{table} FOR EACH ROW EXECUTE FUNCTION nearmiss_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION nearmiss_append_only()")


def downgrade() -> None:
    raise NotImplementedError("the first schema is not taken down: restore a backup instead")
