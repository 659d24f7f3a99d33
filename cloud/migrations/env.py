"""Alembic environment: `cloud.db.upgrade` passes a live connection; the alembic CLI
(`alembic -c cloud/migrations/alembic.ini upgrade head`) uses TINYFLEET_DB_URL."""
from alembic import context
from sqlalchemy import create_engine

from cloud.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from cloud.settings import Settings
    engine = create_engine(Settings.from_env().database_url)
    with engine.begin() as conn:
        _run(conn)
