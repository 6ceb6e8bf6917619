"""Durable call and transfer records."""
