"""``PluginError``: what a plugin is told when it asks for something the system cannot give.

In a module of its own so that every part of the plugin layer (the base class, the host,
the compatibility module, the loader) can raise it without importing one another.
"""

from __future__ import annotations

__all__ = ["PluginError"]


class PluginError(RuntimeError):
    """A plugin asked for something the system cannot give (a registry whose agent is
    switched off, an unknown name); the message says what and why."""
