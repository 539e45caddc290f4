"""Adapters that plug shmdict into other libraries.

Each submodule imports the library it adapts, so importing ``shmdict`` (or
this package) never pulls in any of them: import the submodule you need,
e.g. ``import shmdict.contrib.limits``.
"""
