"""Fake pycuda (see tests/fakes/README.md)."""
VERSION = (2022, 1)
