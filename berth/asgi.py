"""ASGI factory for the server's worker processes: settings come from BERTH_* variables."""

from berth.app import BerthApp, create_app
from berth.config import Settings


def app() -> BerthApp:
    return create_app(Settings.from_env())
