"""Fault detection for the crews: rule files and expressions, the streaming and vectorised
core, context, missing data, root causes, the engine service, backtest and scoring."""

from pathlib import Path
from typing import Final

PACKAGED_RULES: Final = Path(__file__).resolve().parent / "default_rules.yaml"
"""The rule file shipped with the platform, in force until a rule set is activated."""
