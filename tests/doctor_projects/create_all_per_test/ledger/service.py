from sqlalchemy import select

from ledger.db import SessionLocal
from ledger.models import Account, Token


def open_account(name: str) -> None:
    with SessionLocal() as session:
        session.add(Account(name=name))
        session.commit()


def account_names() -> list[str]:
    with SessionLocal() as session:
        return list(session.scalars(select(Account.name).order_by(Account.name)))


def token_owner(value: str) -> str | None:
    with SessionLocal() as session:
        query = select(Account.name).join(Token, Token.account_id == Account.id).where(Token.value == value)
        return session.scalar(query)
