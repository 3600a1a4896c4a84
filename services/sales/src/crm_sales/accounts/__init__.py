"""Sales: accounts."""
