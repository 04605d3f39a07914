"""`berth config verify FILE` and `berth config show`: the TOML config file without starting a server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from berth.config import ConfigError, Settings, effective, read_config_file, read_config_peers

config_cli = typer.Typer(no_args_is_help=True, help="The TOML config file (see berth.example.toml).")


@config_cli.command("verify")
def verify(file: Path = typer.Argument(..., help="The TOML file to check.")) -> None:
    """Check a config file: it parses, has `version = 1`, names only known settings, and their values hold.
    Exit 0 if so, else one line and exit code 2."""
    try:
        values = read_config_file(file)
        Settings.from_env({}, file)  # the file alone, checked as serve checks it
        peers = read_config_peers(file)
    except ConfigError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"berth: {file} is valid ({len(values)} setting(s)" + (f", {len(peers)} peer(s))" if peers else ")"))


@config_cli.command("show")
def show(config: Path = typer.Option(None, "--config", help="TOML config file (env BERTH_CONFIG)."),
         as_json: bool = typer.Option(False, "--json", help="JSON instead of TOML.")) -> None:
    """Print the effective configuration (defaults, then the file, then BERTH_* variables), secrets masked."""
    try:
        settings = Settings.from_env(None, config)
        path = config or (Path(os.environ["BERTH_CONFIG"]) if os.environ.get("BERTH_CONFIG") else None)
        peers = {p.name: p.masked() for p in read_config_peers(path)} if path is not None else {}
    except ConfigError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None
    values = effective(settings)
    if as_json:
        typer.echo(json.dumps({**values, **({"peers": peers} if peers else {})}, indent=2))
        return
    typer.echo("version = 1")
    for name, value in values.items():
        typer.echo(f"{name.replace('_', '-')} = {json.dumps(value)}")  # a JSON scalar is a TOML scalar here
    for peer, table in peers.items():  # [peers.<name>], the secret masked
        typer.echo(f"\n[peers.{peer}]")
        for key, value in table.items():
            typer.echo(f"{key} = {json.dumps(value)}")  # strings and lists of strings: TOML too
