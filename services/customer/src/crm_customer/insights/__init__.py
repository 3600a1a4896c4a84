"""What the customer service reads out of its own projection of every service's events: the timeline's kinds
and cause order, a customer's summary card, and the customer analysis (activity per period, distributions,
cohort retention). Nothing here calls another service."""
