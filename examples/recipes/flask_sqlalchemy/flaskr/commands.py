import click

from flaskr.db import db
from flaskr.models import Shelf


@click.command("init-db")
def init_db_command():
    """Create the tables and the default shelf."""
    db.create_all()
    if db.session.execute(db.select(Shelf).filter_by(name="Unsorted")).scalar() is None:
        db.session.add(Shelf(name="Unsorted"))
        db.session.commit()
    click.echo("Initialized the database.")


def init_app(app):
    app.cli.add_command(init_db_command)
