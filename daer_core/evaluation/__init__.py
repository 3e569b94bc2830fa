"""Retrieval metrics, blocked scoring and plots."""
