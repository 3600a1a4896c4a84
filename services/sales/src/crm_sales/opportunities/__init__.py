"""Sales: opportunities."""
