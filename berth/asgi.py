"""ASGI factory for the server's worker processes: settings come from BERTH_* variables."""

from berth.app import create_app
from berth.config import Settings
from berth.observe.access import Observe


def app() -> Observe:
    return create_app(Settings.from_env())
