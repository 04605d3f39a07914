"""The TOML config file (issue 11): parsed, versioned, strict, and below the environment and the flags."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from berth.config import ConfigError, Settings, effective, read_config_file

EXAMPLE = Path(__file__).resolve().parents[2] / "berth.example.toml"


def test_example_file_names_every_setting_with_its_default() -> None:
    values = read_config_file(EXAMPLE)
    assert set(values) == {f.name for f in fields(Settings)}
    for f in fields(Settings):
        assert values[f.name] == getattr(Settings, f.name), f.name
    Settings.from_env({}, EXAMPLE)


def write(tmp: Path, text: str) -> Path:
    p = tmp / "berth.toml"
    p.write_text(text)
    return p


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    f = write(tmp_path, 'version = 1\nport = 6000\nhost = "0.0.0.0"\nauth = "none"\ndata_dir = "/srv/b"\n')
    s = Settings.from_env({}, f)
    assert (s.port, s.host, s.auth, s.data_dir) == (6000, "0.0.0.0", "none", Path("/srv/b"))
    s = Settings.from_env({"BERTH_PORT": "7000"}, f)
    assert (s.port, s.host) == (7000, "0.0.0.0")
    s = Settings.from_env({"BERTH_PORT": "7000"}, f, port=8000)
    assert s.port == 8000
    s = Settings.from_env({"BERTH_CONFIG": str(f)})  # the file named by the environment
    assert s.port == 6000


@pytest.mark.parametrize("text, words", [
    ('version = 1\nprot = 5000\n', "unknown setting 'prot'"),
    ('version = 1\nport = "5000"\n', "port must be an integer"),
    ('version = 1\naccess-log = "yes"\n', "must be true or false"),
    ('port = 5000\n', "no `version = 1`"),
    ('version = 2\n', "version 2"),
    ('version = 1\nport = 5000\nhost = \n', "line 3"),
    ('version = 1\n[server]\nport = 1\n', "unknown setting 'server'"),
    ('version = 1\nport = 99999\n', "out of range"),
    ('version = 1\nauth = "sometimes"\n', "unknown auth mode"),
])
def test_bad_files_are_one_clear_error(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        Settings.from_env({}, write(tmp_path, text))
    assert words in str(e.value) and "berth.toml" in str(e.value)


def test_show_masks_secrets() -> None:
    s = Settings(admin_secret_access_key="s3cr3t", database_url="postgresql://berth:pw@db:5432/berth?sslmode=require",
                 storage_url="s3://bucket/p?endpoint=http://rgw:8000&region=eu-west-1",
                 archive_storage_url="s3://AKIA:c0ldS3cret@cold/p?endpoint=http://rgw:8000")
    shown = effective(s)
    text = repr(shown)
    assert "s3cr3t" not in text and "pw@" not in text and "c0ldS3cret" not in text
    assert shown["archive_storage_url"] == "s3://AKIA:***@cold/p?endpoint=http://rgw:8000"
    assert shown["admin_secret_access_key"] == "***"
    assert shown["database_url"] == "postgresql://berth:***@db:5432/berth?sslmode=require"
    assert shown["storage_url"] == "s3://bucket/p?endpoint=http://rgw:8000&region=eu-west-1"


def berth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if k != "BERTH_CONFIG"}
    return subprocess.run([sys.executable, "-m", "berth", *args], capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})})


def test_config_verify_and_show_commands(tmp_path: Path) -> None:
    r = berth("config", "verify", str(EXAMPLE))
    assert r.returncode == 0 and "is valid" in r.stdout, r.stderr
    bad = write(tmp_path, 'version = 1\nport = 5000\nhost = \n')
    r = berth("config", "verify", str(bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "line 3" in r.stderr, r.stderr
    good = write(tmp_path, 'version = 1\nport = 6001\nadmin-secret-access-key = "topsecret"\n')
    r = berth("config", "show", "--config", str(good), env={"BERTH_HOST": "127.0.0.2"})
    assert r.returncode == 0, r.stderr
    assert "port = 6001" in r.stdout and 'host = "127.0.0.2"' in r.stdout and "topsecret" not in r.stdout
    shown = tmp_path / "shown.toml"
    shown.write_text(r.stdout)
    assert read_config_file(shown)["port"] == 6001  # what show prints is a config file


def test_serve_with_a_bad_config_file_is_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path, 'version = 1\nport = [\n')
    port = ("--port", "1")  # never served: each of these stops before it would listen
    r = berth("serve", "--config", str(bad), "--data-dir", str(tmp_path / "d"), *port)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "line" in r.stderr, r.stderr
    r = berth("serve", "--data-dir", str(tmp_path / "d"), *port, env={"BERTH_CONFIG": str(tmp_path / "missing.toml")})
    assert r.returncode == 2 and "missing.toml" in r.stderr, r.stderr


def peers_section(text: str) -> str:
    """The example file's commented [peers.eu] table, uncommented."""
    start = text.index("# [peers.eu]")
    return "\n".join(line[2:] for line in text[start:].splitlines() if line.startswith("# "))


def test_the_example_peers_section_and_show_masks_its_secret(tmp_path: Path) -> None:
    from berth.config import read_config_peers

    f = write(tmp_path, "version = 1\n\n" + peers_section(EXAMPLE.read_text()) + "\n")
    [peer] = read_config_peers(f)
    assert (peer.name, peer.endpoint, peer.regions, peer.accounts, peer.access_key_id) == (
        "eu", "https://berth-eu.example:5000", ("eu-west-1",), ("210987654321",), "AKIAEXAMPLEPEER00000")
    assert peer.secret_access_key_file == "/run/secrets/berth-eu"
    r = berth("config", "verify", str(f))
    assert r.returncode == 0 and "1 peer(s)" in r.stdout, r.stderr
    inline = write(tmp_path, 'version = 1\n[peers.x]\nendpoint = "http://127.0.0.1:9"\nregions = ["eu-west-1"]\n'
                             'access-key-id = "AKIAX"\nsecret-access-key = "peer-s3cret"\n')
    r = berth("config", "show", "--config", str(inline))
    assert r.returncode == 0 and "[peers.x]" in r.stdout and "peer-s3cret" not in r.stdout, r.stderr
    shown = tmp_path / "shown.toml"
    shown.write_text(r.stdout)
    assert [p.secret_access_key for p in read_config_peers(shown)] == ["***"]  # still a config file
    r = berth("config", "show", "--json", "--config", str(inline))
    assert r.returncode == 0 and "peer-s3cret" not in r.stdout and '"peers"' in r.stdout, r.stderr


PEER = '[peers.eu]\nendpoint = "https://e.example"\nregions = ["eu-west-1"]\naccess-key-id = "AKIAX"\n'


@pytest.mark.parametrize("text, words", [
    (PEER + 'secret-access-key = "s"\nregion = "x"\n', "unknown key 'region'"),
    (PEER, "one of secret-access-key and secret-access-key-file"),
    (PEER + 'secret-access-key = "s"\nsecret-access-key-file = "/f"\n', "one of secret-access-key"),
    (PEER.replace("https://e.example", "ftp://e") + 'secret-access-key = "s"\n', "expected http(s)://host"),
    (PEER.replace('regions = ["eu-west-1"]\n', "") + 'secret-access-key = "s"\n', "regions is required"),
    (PEER.replace('["eu-west-1"]', "[]") + 'secret-access-key = "s"\n', "at least one region"),
    (PEER + 'secret-access-key = "s"\naccounts = ["12"]\n', "'12' is not a valid account"),
    (PEER.replace("[peers.eu]", "[peers.EU]") + 'secret-access-key = "s"\n', "[peers.EU]"),
    ('peers = "eu"\n', "peers must be tables"),
])
def test_bad_peers_are_one_clear_error(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        Settings.from_env({}, write(tmp_path, "version = 1\n" + text))
    assert words in str(e.value) and "berth.toml" in str(e.value)
