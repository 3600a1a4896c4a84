"""Sales: expenses, their reports and the cost of sale."""
