"""Field service: service contracts, technicians, on-site visits and repair history."""
