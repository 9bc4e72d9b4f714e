"""Databases planted on, listed on and dropped from the suite's server, as another run would leave them."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection

from sqlsandbox import dialects, marks


def admin(url: URL) -> URL:
    return dialects.provisioner_for(url)._admin_url()  # type: ignore[attr-defined]


def plant(url: URL, name: str, mark: marks.Mark | str | None) -> None:
    def work(conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            if mark is not None:
                conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{mark!s}'")
        else:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
            if mark is not None:
                conn.exec_driver_sql(f"CREATE TABLE `{name}`.`{marks.MARKER_TABLE}` (note VARCHAR(255))")
                conn.execute(text(f"INSERT INTO `{name}`.`{marks.MARKER_TABLE}` VALUES (:m)"), {"m": str(mark)})

    dialects.run_admin(admin(url), work)


def names(url: URL) -> set[str]:
    def work(conn: Connection) -> set[str]:
        query = (
            "SELECT datname FROM pg_database"
            if conn.dialect.name == "postgresql"
            else "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
        )
        return {str(name) for name in conn.exec_driver_sql(query).scalars()}

    return dialects.run_admin(admin(url), work)


def drop_all(url: URL, names: list[str]) -> None:
    def work(conn: Connection) -> None:
        for name in names:
            quoted = f'"{name}"' if conn.dialect.name == "postgresql" else f"`{name}`"
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}")

    dialects.run_admin(admin(url), work)
