"""A FastAPI app with an admin interface, as sqladmin's docs write it: a module-level engine, `Admin(app,
engine)` (sqladmin builds its own sessionmaker on that engine) and a ModelView per model."""

from fastapi import FastAPI
from sqladmin import Admin, ModelView
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

engine = create_engine("sqlite:///example.db", connect_args={"check_same_thread": False})


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    email: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)


app = FastAPI()
admin = Admin(app, engine)


class UserAdmin(ModelView, model=User):
    column_list = [User.id, User.name, User.email, User.is_active]
    column_searchable_list = [User.name]
    form_columns = [User.name, User.email, User.is_active]


admin.add_view(UserAdmin)


@app.get("/users/active")
def active_users() -> list[str]:
    # the app's own API next to the admin, on the same engine
    with Session(engine) as session:
        return list(session.scalars(select(User.name).where(User.is_active).order_by(User.name)))
