"""The product brief's import path for the plugin base class.

Plugins written to the brief begin with::

    from plugins.base_plugin import BasePlugin

and this module is that name for watchkeeper's own :class:`watchkeeper.plugins.BasePlugin`.
Keep your plugins next to it (or in any directory ``plugins.directory`` names: watchkeeper
then provides this module itself, so the import works there too). See docs/plugins.md.
"""

from __future__ import annotations

from watchkeeper.plugins import BasePlugin, PluginContext, PluginError

__all__ = ["BasePlugin", "PluginContext", "PluginError"]
