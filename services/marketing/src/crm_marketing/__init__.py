"""The marketing service: triggered journeys, campaigns with budgets and results, holdouts, frequency caps, segments."""
