"""The customers the customer service knows, as match keys only: what a new lead is checked against."""
