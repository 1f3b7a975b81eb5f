"""The property aggregate: its decider (single writer per property) and its read-model projection."""
