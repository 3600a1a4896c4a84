"""The customer service: profiles, channel consents, interactions and the customer 360 timeline."""
