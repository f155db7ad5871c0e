"""The package version, in one place (pyproject reads it; detector files record it)."""

__version__ = "0.1.0"
