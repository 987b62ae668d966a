"""Which creditsd this is: the version its installed distribution declares (pyproject.toml)."""

from importlib.metadata import version

VERSION = version("creditsd")
