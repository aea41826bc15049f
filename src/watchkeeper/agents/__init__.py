"""watchkeeper.agents."""
