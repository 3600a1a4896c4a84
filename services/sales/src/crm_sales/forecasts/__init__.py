"""Sales: forecasts, quotas and forecast accuracy."""
