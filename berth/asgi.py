"""ASGI factory for the server's worker processes: settings come from BERTH_* variables."""

from berth.app import create_app
from berth.config import Settings
from berth.observe import logs
from berth.observe.access import Observe


def app() -> Observe:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)
