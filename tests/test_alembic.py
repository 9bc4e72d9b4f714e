"""sqlsandbox_alembic: the schema comes from the project's migrations (alembic upgrade head)."""

from __future__ import annotations

import pytest

ENV_PY = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config

def run():
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()

run()
"""

MIGRATION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

def upgrade():
    op.create_table("widgets", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
    op.execute("INSERT INTO widgets (name) VALUES ('from-migration')")
"""


def test_schema_built_by_migrations(pytester: pytest.Pytester) -> None:
    (pytester.path / "migrations" / "versions").mkdir(parents=True)
    (pytester.path / "migrations" / "env.py").write_text(ENV_PY)
    (pytester.path / "migrations" / "versions" / "0001_widgets.py").write_text(MIGRATION)
    (pytester.path / "alembic.ini").write_text(
        "[alembic]\nscript_location = migrations\nsqlalchemy.url = sqlite:///dev.db\n"
    )
    pytester.makeini(
        "[pytest]\nsqlsandbox_alembic = alembic.ini\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        from sqlalchemy import text

        def test_migrated(db_connection):
            rows = db_connection.execute(text("SELECT name FROM widgets")).scalars().all()
            assert rows == ["from-migration"]  # seed data of the migration is there
            db_connection.execute(text("INSERT INTO widgets (name) VALUES ('mine')"))

        def test_isolated(db_connection):
            assert db_connection.execute(text("SELECT count(*) FROM widgets")).scalar() == 1
            version = db_connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert version == "0001"
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert not (pytester.path / "dev.db").exists()  # the project's own URL was never used


def test_missing_alembic_ini_is_one_clear_message(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nsqlsandbox_alembic = nope/alembic.ini\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile("def test_x(db_session): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sqlsandbox_alembic names *nope/alembic.ini*, which is not a file.*"])


MODELS = """
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

class Base(DeclarativeBase):
    pass

class Widget(Base):
    __tablename__ = "widgets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(20), nullable=True)
    colour: Mapped[str] = mapped_column(String(20), nullable=True)  # no migration adds it
"""


@pytest.mark.parametrize("with_colour", [False, True])
def test_models_and_migrations_must_agree(pytester: pytest.Pytester, with_colour: bool) -> None:
    (pytester.path / "migrations" / "versions").mkdir(parents=True)
    (pytester.path / "migrations" / "env.py").write_text(ENV_PY)
    migration = MIGRATION
    if with_colour:
        migration = migration.replace(
            'sa.Column("name", sa.String(20))',
            'sa.Column("name", sa.String(20)), sa.Column("colour", sa.String(20))',
        )
    (pytester.path / "migrations" / "versions" / "0001_widgets.py").write_text(migration)
    (pytester.path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    pytester.makepyfile(models=MODELS, test_x="def test_x(db_session): pass\n")
    pytester.makeini(
        "[pytest]\npythonpath = .\nasyncio_default_fixture_loop_scope = function\n"
        "sqlsandbox_alembic = alembic.ini\nsqlsandbox_metadata = models:Base\n"
        "sqlsandbox_check_migrations = true\n"
    )
    result = pytester.runpytest_subprocess()
    if with_colour:
        result.assert_outcomes(passed=1)
    else:
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["*The models and the migrations disagree (1 difference(s)):*", "*colour*"])
