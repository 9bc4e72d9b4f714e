"""Tests of the biomapper example, run against a real database in an sqlsandbox sandbox."""
