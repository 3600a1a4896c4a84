"""Sales: territories."""
