"""The scoring service: each customer's scores from order and ticket facts, and the segment changes they cause."""
