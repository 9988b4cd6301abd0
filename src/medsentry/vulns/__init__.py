"""Vulnerability intelligence: feeds and their store (feeds/, store.py, records.py), matching (match/)."""
