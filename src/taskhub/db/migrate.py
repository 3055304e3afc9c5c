"""Running Alembic migrations programmatically (CLI ``taskhub migrate`` and embedded start-up)."""

from __future__ import annotations

from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged ``taskhub/migrations`` directory."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("taskhub").joinpath("migrations")))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` in one transaction."""
    cfg = alembic_config()

    def _upgrade(sync_conn: Any) -> None:
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Downgrade the database behind ``engine`` to ``revision``."""
    cfg = alembic_config()

    def _downgrade(sync_conn: Any) -> None:
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_downgrade)
