"""The document lifecycle (pure: no I/O): every document the service stores is made
here (``core``), from the stored vocabulary (``envelope``) and what a write makes of a
document (``documents``)."""

from .core import Lifecycle, Made, Op

__all__ = ["Lifecycle", "Made", "Op"]
