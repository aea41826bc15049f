"""watchkeeper.web."""
