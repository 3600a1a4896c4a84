"""The CRM web console: pages over the five services' REST APIs, called with the signed-in user's token."""
