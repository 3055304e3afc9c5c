"""deploy/fleet/fleet.py as a module (it is a script, not part of the package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FLEET_SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "fleet" / "fleet.py"

_spec = importlib.util.spec_from_file_location("taskhub_fleet_script", FLEET_SCRIPT)
assert _spec is not None and _spec.loader is not None
fleet = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fleet  # dataclasses look their module up while the script loads
_spec.loader.exec_module(fleet)
