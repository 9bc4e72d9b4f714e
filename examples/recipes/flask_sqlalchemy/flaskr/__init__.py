"""A Flask app factory in the shape of Flask's tutorial, with Flask-SQLAlchemy 3.x holding the database."""

import os

from flask import Flask

from flaskr.db import db


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        SQLALCHEMY_DATABASE_URI="sqlite:///flaskr.sqlite",  # in the instance folder
    )

    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)

    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)  # the engine is built here, per app, from SQLALCHEMY_DATABASE_URI

    from flaskr import books, commands

    app.register_blueprint(books.bp)
    commands.init_app(app)
    return app
