"""Operator commands: migrations, topic creation, the local stack."""
