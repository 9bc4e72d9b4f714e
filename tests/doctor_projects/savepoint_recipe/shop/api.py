from fastapi import Depends, FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from shop.db import SessionLocal
from shop.models import User

app = FastAPI()


def get_db():
    with SessionLocal() as session:
        yield session


@app.post("/users")
def create_user(name: str, db: Session = Depends(get_db)) -> dict[str, str]:
    db.add(User(name=name))
    db.commit()
    return {"name": name}


@app.get("/users")
def list_users(db: Session = Depends(get_db)) -> list[str]:
    return list(db.scalars(select(User.name).order_by(User.name)))
