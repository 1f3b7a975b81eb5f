"""Runtime configuration shared by the services, the stream worker, ops and tests."""

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
