"""Secrets at rest and in logs, against a real `berth serve --auth iam` (SQLite and PostgreSQL).

- the data dir is 0700, the database, its WAL and the master key 0600, even under umask 000;
- a copy of the database alone (SQLite file, or a pg_dump) holds no secret access key, no token key;
- `berth admin rotate-master-key` and `rotate-token-key` while it serves: every credential keeps
  working, old registry tokens still pull, new tokens are signed with the new key;
- a secret given to Berth is never printed back; no secret created in a realistic run (keys, sessions,
  tokens, pushes, bad signatures) appears in the server's log, even at debug level.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from berth.keys import MasterKey
from tests.support.aws import basic, call, client, registry_token, token_claims
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIASECRETSATREST01", "given-admin-secret-Zq8vR2mN4pL6tY0wX3kB"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _berth(srv: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "berth", *args, "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database-url", srv.database_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("secrets")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    old = os.umask(0)  # the server inherits it: every file would be world-writable without Berth's own modes
    try:
        srv = BerthServer(base / "data", database_url=url, args=["--auth", "iam"],
                          env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                               "BERTH_LOG_LEVEL": "debug", "BERTH_MASTER_KEY_FILE": ""}).start()
    finally:
        os.umask(old)
    srv.settle = 1.5 if url else 0.0  # type: ignore[attr-defined]  # PostgreSQL caches trust for a second
    try:
        yield srv
    finally:
        srv.stop()


def _database_bytes(srv: BerthServer, tmp: Path) -> bytes:
    """What a thief of the database alone gets: the SQLite files copied, or a pg_dump."""
    if srv.database_url:
        pg_dump = "/usr/lib/postgresql/15/bin/pg_dump"
        return subprocess.run([pg_dump, srv.database_url], capture_output=True, check=True, timeout=60).stdout
    out = b""
    for p in srv.data_dir.iterdir():
        if p.name.startswith("berth.db"):
            shutil.copyfile(p, tmp / p.name)
            out += (tmp / p.name).read_bytes()
    return out


def test_modes_whatever_the_umask(server: BerthServer) -> None:
    d = server.data_dir
    assert _mode(d) == 0o700
    assert _mode(d / "keys") == 0o700
    assert _mode(d / "keys" / "master.key") == 0o600
    if not server.database_url:
        for name in ("berth.db", "berth.db-wal", "berth.db-shm"):
            if (d / name).exists():
                assert _mode(d / name) == 0o600, name


def test_a_copy_of_the_database_reveals_no_secret(server: BerthServer, tmp_path: Path) -> None:
    admin_iam = client("iam", server.url, KEY, SECRET)
    admin_iam.create_user(UserName="at-rest")
    created = admin_iam.create_access_key(UserName="at-rest")["AccessKey"]
    user_secret = created["SecretAccessKey"]
    time.sleep(server.settle)  # type: ignore[attr-defined]
    assert call(client("sts", server.url, created["AccessKeyId"], user_secret), "GetCallerIdentity", {}).error is None
    master = MasterKey.load(server.data_dir / "keys" / "master.key")
    dump = _database_bytes(server, tmp_path)
    assert created["AccessKeyId"].encode() in dump  # the copy is a real one
    for secret in (SECRET, user_secret):
        assert secret.encode() not in dump
    assert b"enc1:" in dump
    # the token keys: their plain hex is nowhere in the copy
    keys = _token_keys(server, master)
    assert keys
    for hexkey in keys.values():
        assert hexkey.encode() not in dump


def _token_keys(server: BerthServer, master: MasterKey) -> dict[str, str]:
    rows = _rows(server, "SELECT id, secret FROM signing_keys ORDER BY created_at")
    return {k: master.open(v, f"signing_keys:{k}") for k, v in rows}


def _rows(server: BerthServer, sql: str) -> list[tuple[str, str]]:
    if server.database_url:
        out = subprocess.run(["/usr/lib/postgresql/15/bin/psql", server.database_url, "-At", "-F", "\t", "-c", sql],
                             capture_output=True, text=True, check=True).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]  # type: ignore[misc]
    import sqlite3

    with sqlite3.connect(server.data_dir / "berth.db") as conn:
        return [(str(a), str(b)) for a, b in conn.execute(sql).fetchall()]


def test_rotations_while_serving(server: BerthServer) -> None:
    ecr = client("ecr", server.url, KEY, SECRET)
    iam = client("iam", server.url, KEY, SECRET)
    iam.create_user(UserName="rotated")
    k = iam.create_access_key(UserName="rotated")["AccessKey"]
    iam.put_user_policy(UserName="rotated", PolicyName="ecr", PolicyDocument='{"Version": "2012-10-17", '
                        '"Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}')
    old_token = registry_token(ecr)
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(old_token)
        img = random_image()
        assert oci.push_image("rotation/app", img, "v1").status_code == 201

    before = MasterKey.load(server.data_dir / "keys" / "master.key")
    r = _berth(server, "admin", "rotate-master-key")
    assert r.returncode == 0, r.stderr
    after = MasterKey.load(server.data_dir / "keys" / "master.key")
    assert after.key_ids == (after.current,) and after.current not in before.key_ids
    values = [v for _, v in _rows(server, "SELECT id, secret FROM access_keys")]
    assert values and all(v.startswith(f"enc1:{after.current}:") for v in values)
    time.sleep(server.settle)  # type: ignore[attr-defined]
    # the running server re-reads the key file when it meets the new key id
    assert call(client("sts", server.url, KEY, SECRET), "GetCallerIdentity", {}).error is None
    assert call(client("sts", server.url, k["AccessKeyId"], k["SecretAccessKey"]), "GetCallerIdentity",
                {}).error is None

    old_kid = old_token.split(".")[0]
    r = _berth(server, "admin", "rotate-token-key")
    assert r.returncode == 0, r.stderr
    new_kid = list(_token_keys(server, after))[-1]
    assert new_kid != old_kid
    deadline = time.monotonic() + 20
    while True:  # the server re-reads the token keys every few seconds
        token = registry_token(client("ecr", server.url, k["AccessKeyId"], k["SecretAccessKey"]))
        if token.split(".")[0] == new_kid or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert token.split(".")[0] == new_kid
    assert token_claims(token)["sub"].endswith(":user/rotated")
    for t in (old_token, token):  # the old token keeps pulling until it expires
        r2 = httpx.get(f"{server.url}/v2/rotation/app/manifests/v1", headers={"Authorization": basic(t),
                       "Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r2.status_code == 200, r2.text


def test_a_loose_data_dir_is_warned_about(server: BerthServer, tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    r = subprocess.run([sys.executable, "-m", "berth", "db", "upgrade", "--data-dir", str(loose)],
                       env={k: v for k, v in os.environ.items() if not k.startswith("BERTH_")},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"data dir {loose} is open to other users (mode 0755)" in r.stderr
    assert _mode(loose / "berth.db") == 0o600


def test_no_secret_in_the_log(server: BerthServer, tmp_path: Path) -> None:
    """A realistic run: users and keys, sessions, tokens, pushes, pulls, bad signatures, bad tokens."""
    created: list[str] = [SECRET]
    iam = client("iam", server.url, KEY, SECRET)
    iam.create_user(UserName="logged")
    iam.put_user_policy(UserName="logged", PolicyName="all", PolicyDocument='{"Version": "2012-10-17", '
                        '"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}')
    k = iam.create_access_key(UserName="logged")["AccessKey"]
    created.append(k["SecretAccessKey"])
    time.sleep(server.settle)  # type: ignore[attr-defined]
    sess = client("sts", server.url, k["AccessKeyId"], k["SecretAccessKey"]).get_session_token()["Credentials"]
    created += [sess["SecretAccessKey"], sess["SessionToken"]]
    ecr = client("ecr", server.url, k["AccessKeyId"], k["SecretAccessKey"])
    token = registry_token(ecr)
    created.append(token)
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(token)
        for i in range(3):
            assert oci.push_image("logged/app", random_image(), f"t{i}").status_code == 201
        assert oci.get_manifest("logged/app", "t0").status_code == 200
        oci.http.headers["Authorization"] = basic(token[:-4] + "AAAA")  # a bad token
        assert oci.get_manifest("logged/app", "t0").status_code == 401
    # bad signatures: the wrong secret, a session token that is not one
    wrong = client("ecr", server.url, k["AccessKeyId"], k["SecretAccessKey"][::-1])
    assert call(wrong, "DescribeRepositories", {}).error == "InvalidSignatureException"
    import boto3

    bogus = boto3.client("ecr", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=sess["AccessKeyId"],
                         aws_secret_access_key=sess["SecretAccessKey"], aws_session_token=sess["SessionToken"] + "x")
    assert call(bogus, "DescribeRepositories", {}).error is not None
    created.append(k["SecretAccessKey"][::-1])
    iam.create_user(UserName="gone")
    k2 = iam.create_access_key(UserName="gone")["AccessKey"]
    created.append(k2["SecretAccessKey"])
    iam.delete_access_key(UserName="gone", AccessKeyId=k2["AccessKeyId"])
    time.sleep(server.settle)  # type: ignore[attr-defined]
    assert call(client("ecr", server.url, k2["AccessKeyId"], k2["SecretAccessKey"]), "DescribeRepositories",
                {}).error == "UnrecognizedClientException"
    created += list(_token_keys(server, MasterKey.load(server.data_dir / "keys" / "master.key")).values())
    log = server.read_log()
    assert "berth: account 123456789012: administrator 'admin' created" in log  # the log is the real one
    for secret in created:
        assert secret not in log, f"a secret ({secret[:4]}…) is in the server log"
    raw_master = (server.data_dir / "keys" / "master.key").read_text()
    import json

    for value in json.loads(raw_master)["keys"].values():
        assert value not in log


def test_the_wrong_master_key_is_a_one_line_refusal(tmp_path: Path) -> None:
    srv = BerthServer(tmp_path / "data", args=["--auth", "iam"],
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET})
    srv.start()
    srv.stop()
    other = tmp_path / "other.key"
    MasterKey.load_or_create(other)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update(BERTH_MASTER_KEY_FILE=str(other))
    r = subprocess.run([sys.executable, "-m", "berth", "serve", "--data-dir", str(srv.data_dir), "--port",
                        str(srv.port), "--auth", "iam"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "which the master key file" in r.stderr and "BERTH_MASTER_KEY_FILE" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2
