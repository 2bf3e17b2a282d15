"""Typed settings and rules, loaded from YAML."""

from config.rules import Condition, Rules
from config.settings import Config, ConfigError, Settings, load_config, load_rules

__all__ = ["Condition", "Config", "ConfigError", "Rules", "Settings", "load_config", "load_rules"]
