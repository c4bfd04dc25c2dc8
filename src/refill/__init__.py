"""Refill: keeps prepaid wallets topped up."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("refill")
except PackageNotFoundError:  # a source tree run without `pip install -e .`
    __version__ = "0+unknown"

__all__ = ["__version__"]
