"""The plugin tests say `from plugin_kit import ...` (registered by hand, as tests/daemon
does with daemon_kit, so that this directory's conftest does not shadow tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "plugin_kit" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "plugin_kit", Path(__file__).resolve().with_name("plugin_kit.py"))
    assert _spec is not None and _spec.loader is not None
    sys.modules["plugin_kit"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["plugin_kit"])
