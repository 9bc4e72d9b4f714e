"""Atom: agent governance for the Atom meta-agent platform."""
