"""The marketing service: triggered journeys now; segments, budgets, results, holdouts and frequency caps to come."""
