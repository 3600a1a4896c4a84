"""The support service: complaints with their SLA and survey answers now; resolution and escalation to come."""
