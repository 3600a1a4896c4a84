"""Profiles beyond sign-up: kinds (person, organisation), typed custom attributes, accounts and contacts, search."""
