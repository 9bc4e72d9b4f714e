"""Database layer: cache models and session management."""
