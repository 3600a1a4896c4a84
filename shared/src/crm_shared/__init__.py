"""Shared library of the CRM platform: the public event contract and the plumbing every service uses."""
