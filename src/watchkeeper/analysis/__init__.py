"""watchkeeper.analysis."""
