"""Core mapping logic."""
