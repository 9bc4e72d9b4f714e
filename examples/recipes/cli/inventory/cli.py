"""A click CLI on a module-level sessionmaker: `python -m inventory.cli add widget --quantity 3`."""

import click
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from inventory.db import Base, Product, SessionLocal, engine


@click.group()
def cli():
    """Keep track of products in stock."""


@cli.command("init-db")
def init_db():
    """Create the tables."""
    Base.metadata.create_all(engine)
    click.echo("Tables created.")


@cli.command()
@click.argument("name")
@click.option("--quantity", "-q", type=click.IntRange(min=0), default=0)
def add(name, quantity):
    """Add a product."""
    with SessionLocal() as session:
        session.add(Product(name=name, quantity=quantity))
        try:
            session.commit()
        except IntegrityError:
            raise click.ClickException(f"{name} already exists") from None
    click.echo(f"Added {name} ({quantity}).")


@cli.command("list")
def list_products():
    """List products and quantities."""
    with SessionLocal() as session:
        for product in session.scalars(select(Product).order_by(Product.name)):
            click.echo(f"{product.name}\t{product.quantity}")


@cli.command()
@click.argument("name")
@click.argument("amount", type=int)
def take(name, amount):
    """Take AMOUNT of NAME out of stock: all or nothing."""
    with SessionLocal.begin() as session:
        product = session.scalar(select(Product).where(Product.name == name))
        if product is None:
            raise click.ClickException(f"no product {name}")
        if product.quantity < amount:
            raise click.ClickException(f"only {product.quantity} {name} in stock")
        product.quantity -= amount
    click.echo(f"Took {amount} {name}.")


@cli.command()
@click.argument("amount", type=click.IntRange(min=1))
def restock(amount):
    """Add AMOUNT to every product (one UPDATE, through the engine)."""
    with engine.begin() as conn:
        result = conn.execute(update(Product).values(quantity=Product.quantity + amount))
    click.echo(f"Restocked {result.rowcount} products.")


def main(argv=None):
    return cli.main(args=argv, prog_name="inventory")


if __name__ == "__main__":
    main()
