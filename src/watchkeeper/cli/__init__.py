"""watchkeeper.cli."""
