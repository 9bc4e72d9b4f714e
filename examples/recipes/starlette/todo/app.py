"""Plain Starlette: Route handlers opening sessions from a module-level async_sessionmaker, a background task
writing an audit entry after the response."""

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from todo.db import AuditEntry, Item, Session, TodoList


async def audit(action: str) -> None:
    async with Session.begin() as session:
        session.add(AuditEntry(action=action))


async def create_list(request: Request) -> JSONResponse:
    data = await request.json()
    slug = data.get("slug")
    if not isinstance(slug, str) or not slug.isidentifier():
        return JSONResponse({"error": "slug must be an identifier"}, status_code=400)
    async with Session() as session:
        todo_list = TodoList(slug=slug)
        session.add(todo_list)
        try:
            await session.commit()
        except IntegrityError:
            return JSONResponse({"error": f"list {slug!r} exists"}, status_code=409)
    return JSONResponse(
        {"id": todo_list.id, "slug": slug}, status_code=201, background=BackgroundTask(audit, f"created {slug}")
    )


async def get_list_or_404(session, slug: str) -> TodoList:
    todo_list = await session.scalar(select(TodoList).where(TodoList.slug == slug))
    if todo_list is None:
        raise HTTPException(status_code=404, detail=f"no list {slug!r}")
    return todo_list


async def items(request: Request) -> JSONResponse:
    slug = request.path_params["slug"]
    async with Session() as session:
        todo_list = await get_list_or_404(session, slug)
        if request.method == "POST":
            data = await request.json()
            session.add(Item(list_id=todo_list.id, text=data["text"]))
            await session.commit()
        rows = await session.scalars(select(Item).where(Item.list_id == todo_list.id).order_by(Item.id))
        return JSONResponse([{"id": i.id, "text": i.text, "done": i.done} for i in rows])


async def complete(request: Request) -> Response:
    async with Session.begin() as session:
        item = await session.get(Item, request.path_params["item_id"])
        if item is None:
            raise HTTPException(status_code=404)
        item.done = True
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/lists", create_list, methods=["POST"]),
        Route("/lists/{slug}/items", items, methods=["GET", "POST"]),
        Route("/items/{item_id:int}/done", complete, methods=["POST"]),
    ]
)
