"""User history: one activity per event a user took part in, kept in generations that a rebuild
replaces without a pause (see generations.py, rebuild.py and topology.md)."""
