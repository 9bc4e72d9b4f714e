"""biomapper: a small identifier-mapping service with a database-backed mapping cache."""
