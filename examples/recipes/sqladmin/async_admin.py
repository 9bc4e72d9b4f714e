"""The same admin on an async engine, in a plain Starlette app: sqladmin then builds an async sessionmaker."""

from sqladmin import Admin, ModelView
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from main import User

engine = create_async_engine("sqlite+aiosqlite:///example.db")

app = Starlette()
admin = Admin(app, engine)


class UserAdmin(ModelView, model=User):
    column_list = [User.id, User.name, User.email]
    form_columns = [User.name, User.email, User.is_active]


admin.add_view(UserAdmin)
