"""Sales: commission plans and statements."""
