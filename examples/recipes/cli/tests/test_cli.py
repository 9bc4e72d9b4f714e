"""The CLI run in-process with click's CliRunner, as click's testing docs write it; the test seeds and reads
through db_session, in the same sandbox as the commands' sessions."""

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory.cli import cli, main
from inventory.db import Product


@pytest.fixture
def runner():
    return CliRunner()


def quantities(session: Session) -> dict[str, int]:
    session.expire_all()  # the commands changed rows through their own sessions
    return dict(session.execute(select(Product.name, Product.quantity)).tuples().all())


def test_add(runner, db_session: Session):
    result = runner.invoke(cli, ["add", "widget", "--quantity", "3"])
    assert result.exit_code == 0, result.output
    assert result.output == "Added widget (3).\n"
    # what the command committed is in the database, in this test
    assert quantities(db_session) == {"widget": 3}


def test_the_same_name_in_another_test(runner):
    # test_add added "widget" too; in any order both pass
    assert runner.invoke(cli, ["add", "widget"]).exit_code == 0


def test_duplicate_is_an_error_and_the_first_stays(runner, db_session: Session):
    runner.invoke(cli, ["add", "gadget", "-q", "1"])
    result = runner.invoke(cli, ["add", "gadget", "-q", "9"])
    assert result.exit_code == 1
    assert "gadget already exists" in result.output
    assert quantities(db_session) == {"gadget": 1}


def test_negative_quantity_is_a_usage_error(runner, db_session: Session):
    result = runner.invoke(cli, ["add", "widget", "-q", "-1"])
    assert result.exit_code == 2
    assert quantities(db_session) == {}


def test_list_shows_rows_the_test_committed(runner, db_session: Session):
    db_session.add_all([Product(name="bolt", quantity=10), Product(name="nut", quantity=0)])
    db_session.commit()
    result = runner.invoke(cli, ["list"])
    assert result.output == "bolt\t10\nnut\t0\n"


def test_starts_empty(runner):
    assert runner.invoke(cli, ["list"]).output == ""


def test_take_is_all_or_nothing(runner, db_session: Session):
    db_session.add(Product(name="bolt", quantity=5))
    db_session.commit()
    assert runner.invoke(cli, ["take", "bolt", "2"]).exit_code == 0
    refused = runner.invoke(cli, ["take", "bolt", "4"])
    assert refused.exit_code == 1
    assert "only 3 bolt in stock" in refused.output
    missing = runner.invoke(cli, ["take", "screw", "1"])
    assert "no product screw" in missing.output
    assert quantities(db_session) == {"bolt": 3}


def test_restock_through_the_engine(runner, db_session: Session):
    db_session.add_all([Product(name="bolt", quantity=1), Product(name="nut", quantity=2)])
    db_session.commit()
    result = runner.invoke(cli, ["restock", "10"])
    assert result.output == "Restocked 2 products.\n"
    assert quantities(db_session) == {"bolt": 11, "nut": 12}


def test_check_constraint_holds(db_session: Session):
    # the schema sqlsandbox built carries the model's CHECK constraint (MariaDB and PostgreSQL enforce it;
    # SQLite too)
    from sqlalchemy.exc import IntegrityError, OperationalError

    db_session.add(Product(name="bad", quantity=-1))
    with pytest.raises((IntegrityError, OperationalError)):
        db_session.commit()


def test_main_with_argv(db_session: Session, capsys):
    # the console-script entry point, called in-process
    with pytest.raises(SystemExit) as exit_info:
        main(["add", "sprocket", "-q", "4"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "Added sprocket (4).\n"
    assert quantities(db_session) == {"sprocket": 4}


def test_init_db_creates_nothing_twice(runner):
    # create_all() finds the tables sqlsandbox built and emits no DDL (which MariaDB would refuse in a test)
    assert runner.invoke(cli, ["init-db"]).output == "Tables created.\n"
