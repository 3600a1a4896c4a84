"""Tickets: requests, complaints and questions, their lifecycle, conversation and history."""
