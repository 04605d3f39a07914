"""Replication peers in the TOML config file: `[peers.<name>]` tables (berth.example.toml).

    [peers.eu]
    endpoint = "https://berth-eu.example:5000"
    regions = ["eu-west-1"]
    accounts = ["210987654321"]              # optional; default any account
    access-key-id = "AKIA..."
    secret-access-key-file = "/run/secrets/berth-eu"   # or secret-access-key = "..." (one of the two)

How they combine with `berth peers add`: `serve --config FILE` (or BERTH_CONFIG) writes the file's peers into
the database at start (their secrets sealed like any peer's) and removes the peers an earlier start took from
the file that it no longer names; a start without a config file leaves the peers as they are. Those peers
are read-only to the CLI (`add` and `remove` of such a name are refused: edit the file); a file peer takes
over a CLI-added peer of the same name. Every process and node then reads the database.
Only stdlib here: berth/config.py reads it while checking a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
ENDPOINT = re.compile(r"https?://[^/\s]+/?")
REGION = re.compile(r"[0-9a-z-]{2,25}")
ACCOUNT = re.compile(r"[0-9]{12}")
KEYS = ("endpoint", "regions", "accounts", "access-key-id", "secret-access-key", "secret-access-key-file")


@dataclass(frozen=True)
class ConfigPeer:
    name: str
    endpoint: str
    regions: tuple[str, ...]
    accounts: tuple[str, ...]
    access_key_id: str
    secret_access_key: str | None  # given in the file
    secret_access_key_file: str | None  # or read from this file at start

    def secret(self) -> str:
        if self.secret_access_key is not None:
            return self.secret_access_key
        assert self.secret_access_key_file is not None
        try:
            return Path(self.secret_access_key_file).read_text().strip()
        except OSError as e:
            raise ValueError(f"peer {self.name}: secret-access-key-file {self.secret_access_key_file}: "
                             f"{e.strerror}") from None

    def masked(self) -> dict[str, object]:
        """As `berth config show` prints it: the secret never."""
        out: dict[str, object] = {"endpoint": self.endpoint, "regions": list(self.regions),
                                  "accounts": list(self.accounts), "access-key-id": self.access_key_id}
        if self.secret_access_key is not None:
            out["secret-access-key"] = "***"
        else:
            out["secret-access-key-file"] = self.secret_access_key_file
        return out


def _strings(value: object, pattern: re.Pattern[str], what: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: {what} must be a list of strings")
    for v in value:
        if not pattern.fullmatch(v):
            raise ValueError(f"{where}: {v!r} is not a valid {what[:-1]}")
    return tuple(dict.fromkeys(value))


def parse(value: object) -> list[ConfigPeer]:
    """The `peers` table of a config file; ValueError naming the peer and key otherwise."""
    if not isinstance(value, dict):
        raise ValueError("peers must be tables: [peers.<name>]")
    out = []
    for name, table in value.items():
        where = f"[peers.{name}]"
        if not NAME.fullmatch(name):
            raise ValueError(f"{where}: a peer's name is lower case letters, digits, '.', '_', '-', at most 64")
        if not isinstance(table, dict):
            raise ValueError(f"{where} must be a table")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(KEYS)}")
        for key in ("endpoint", "access-key-id", "secret-access-key", "secret-access-key-file"):
            if key in table and not isinstance(table[key], str):
                raise ValueError(f"{where}: {key} must be a string")
        for key in ("endpoint", "regions", "access-key-id"):
            if key not in table:
                raise ValueError(f"{where}: {key} is required")
        if ("secret-access-key" in table) == ("secret-access-key-file" in table):
            raise ValueError(f"{where}: give one of secret-access-key and secret-access-key-file")
        if not ENDPOINT.fullmatch(table["endpoint"]):
            raise ValueError(f"{where}: endpoint {table['endpoint']!r}: expected http(s)://host[:port]")
        regions = _strings(table["regions"], REGION, "regions", where)
        if not regions:
            raise ValueError(f"{where}: regions must name at least one region")
        if not table["access-key-id"]:
            raise ValueError(f"{where}: access-key-id is empty")
        out.append(ConfigPeer(name, table["endpoint"].rstrip("/"), regions,
                              _strings(table.get("accounts", []), ACCOUNT, "accounts", where),
                              table["access-key-id"], table.get("secret-access-key"),
                              table.get("secret-access-key-file")))
    return out
