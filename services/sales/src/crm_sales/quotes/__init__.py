"""Sales: quotes."""
