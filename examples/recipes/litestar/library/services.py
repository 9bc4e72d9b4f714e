from advanced_alchemy.extensions.litestar import repository, service

from library.models import Author, Book


class AuthorService(service.SQLAlchemyAsyncRepositoryService[Author]):
    class Repo(repository.SQLAlchemyAsyncRepository[Author]):
        model_type = Author

    repository_type = Repo


class BookService(service.SQLAlchemyAsyncRepositoryService[Book]):
    class Repo(repository.SQLAlchemyAsyncRepository[Book]):
        model_type = Book

    repository_type = Repo
