"""The package version, in one place (the package root and the files vsconf writes read it)."""

__version__ = "0.2.0"
