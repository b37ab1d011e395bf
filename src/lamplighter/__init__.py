"""Lamplighter: a self-serve reliability platform."""

__version__ = "0.1.0"
