"""watchkeeper.remediation."""
