"""watchkeeper.notify."""
