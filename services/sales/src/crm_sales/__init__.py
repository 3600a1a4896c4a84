"""The sales service: orders now; leads, opportunities, forecasts, territories and commissions to come."""
