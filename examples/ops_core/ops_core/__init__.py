"""ops_core: a small task service (REST + gRPC + background scheduler) over SQLAlchemy."""
