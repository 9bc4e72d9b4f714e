"""Services used by the mapping executor."""
