"""dotagent: a per-user scheduler and supervisor for small scripts.

Kept import-free on purpose: `dotagent --version` must not pay for anything.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
