"""The outbox keeps the images a message shows inline (the governance emails' charts).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new nullable column: every message queued before has no images, as before.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("images", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("images")
