"""Shared code, shipped to the cluster as a py_module."""
VERSION = "1"
