"""watchkeeper.plugins."""
