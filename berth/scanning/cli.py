"""`berth vulndb import|status` and `berth sbom`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import typer

from berth.cli_common import DatabaseUrl, DataDir, run_on_db, settings

vulndb_cli = typer.Typer(no_args_is_help=True, help="The offline vulnerability database (OSV format).")
signing_cli = typer.Typer(no_args_is_help=True, help="Managed signing: the signing profiles' keys.")


@vulndb_cli.command("import")
def vulndb_import(paths: list[Path] = typer.Argument(..., help="OSV JSON files, directories, zip archives."),
                  data_dir: Path = DataDir, database_url: str = DatabaseUrl,
                  progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")) -> None:
    """Import OSV advisories; newer `modified` replaces older, the same data twice changes nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from berth.scanning.vulndb import count, import_paths

    s = settings(data_dir=data_dir, database_url=database_url)

    async def run(db: Any) -> int:
        total = count(paths)
        with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      disable=not progress, transient=True) as bar:
            task = bar.add_task("import", total=total)
            report = await import_paths(db, paths, lambda n: bar.advance(task, n))
        for name, why in report.errors:
            typer.echo(f"berth: skipped {name}: {why}", err=True)
        typer.echo(f"read {report.read} records: {report.new} new, {report.replaced} replaced by newer, "
                   f"{report.unchanged} unchanged; {len(report.errors)} files skipped")
        return 1 if report.errors and not report.read else 0

    run_on_db(s, run)


@vulndb_cli.command("status")
def vulndb_status(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Sources, record counts per ecosystem and age of the vulnerability database."""
    from berth.db import scanning as qs

    s = settings(data_dir=data_dir, database_url=database_url)

    async def run(db: Any) -> int:
        st = await db.read(qs.status)
        if st.updated_at is None:
            typer.echo("vulnerability database: empty (import OSV data with `berth vulndb import PATH…`)")
            return 0
        age = (time.time() - st.updated_at) / 3600
        typer.echo(f"records: {st.records}  generation: {st.generation}  last change: {age:.1f} h ago  "
                   f"newest record modified: {st.newest_modified}")
        for eco, n in st.by_ecosystem.items():
            typer.echo(f"  {eco}: {n}")
        typer.echo("sources:")
        for name, at, records, changed, failed in st.sources:
            typer.echo(f"  {name}: {records} records ({changed} changed, {failed} bad files), "
                       f"imported {(time.time() - at) / 3600:.1f} h ago")
        return 0

    run_on_db(s, run)


def sbom(image: str = typer.Argument(..., help="REPOSITORY:TAG or REPOSITORY@sha256:…"),
         account: str = typer.Option(None, "--account", help="Registry (account) id; default: the default account."),
         region: str = typer.Option(None, "--region", help="Region; default: the default region."),
         output: Path = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
         data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """The image's inventory as a CycloneDX JSON SBOM with package URLs (the stored scan's, else read now)."""
    from berth.db import registry as qr
    from berth.db import scanning as qs
    from berth.scanning.inventory import read_inventory
    from berth.scanning.model import Inventory
    from berth.scanning.sbom import cyclonedx_json

    s = settings(data_dir=data_dir, database_url=database_url)
    if "@" in image:
        name, _, ref = image.partition("@")
    else:
        name, _, ref = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")

    async def run(db: Any) -> int:
        from berth.app import open_blob_store

        repo = await db.read(qr.get_repository, account or s.default_account, region or s.default_region, name)
        if repo is None:
            typer.echo(f"berth: no repository {name!r}", err=True)
            return 1
        digest = ref if ref.startswith("sha256:") else await db.read(qr.tag_digest, repo.id, ref)
        m = None if digest is None else await db.read(qr.manifest_by_digest, repo.id, digest)
        if m is None:
            typer.echo(f"berth: no image {image!r}", err=True)
            return 1
        row = await db.read(qs.get_scan, repo.id, m.digest)
        if row is not None and row.inventory is not None:
            inv = Inventory.from_json(row.inventory)
        else:
            import json as _json

            doc = _json.loads(m.body)
            if not isinstance(doc, dict) or "layers" not in doc:
                typer.echo(f"berth: {image!r} is not an image manifest (an index or an artifact)", err=True)
                return 1
            blobs = await open_blob_store(s)
            layers = [d["digest"] for d in doc["layers"] if "tar" in str(d.get("mediaType", ""))]
            inv = await asyncio.to_thread(read_inventory, layers, blobs.open)
        text = cyclonedx_json(inv, name, m.digest)
        if output is not None:
            output.write_text(text)
        else:
            typer.echo(text)
        return 0

    run_on_db(s, run)


def _print_pem(pem: str | None, profile: str) -> int:
    """The profile's key material on standard output as it is; 1 when the profile has no key."""
    if pem is None:
        typer.echo(f"berth: no key for signing profile {profile!r}", err=True)
        return 1
    typer.echo(pem, nl=False)
    return 0


@signing_cli.command("public-key")
def signing_public_key(profile: str = typer.Argument(..., help="Signing profile name (or its ARN)."),
                       account: str = typer.Option(None, "--account", help="Account id; default: the default account."),
                       data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Print the profile's public key (PEM), for a verifier's policy (e.g. containers' keyPath)."""
    from berth.scanning.signing import SigningService, profile_name

    s = settings(data_dir=data_dir, database_url=database_url)

    async def run(db: Any) -> int:
        return _print_pem(await SigningService(db).public_key(account or s.default_account, profile_name(profile)),
                          profile)

    run_on_db(s, run)


@signing_cli.command("certificate")
def signing_certificate(profile: str = typer.Argument(..., help="Signing profile name (or its ARN)."),
                        account: str = typer.Option(None, "--account", help="Account id; default: the default."),
                        data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Print the profile's certificate (PEM) for Notary Project signatures, for notation's trust store."""
    from berth.keys.files import prepare_data_dir
    from berth.scanning.signing import SigningService, profile_name

    s = settings(data_dir=data_dir, database_url=database_url)
    master, _ = prepare_data_dir(s)  # the certificate is signed with the profile's sealed private key

    async def run(db: Any) -> int:
        signer = SigningService(db, keys=master)
        return _print_pem(await signer.certificate(account or s.default_account, profile_name(profile)), profile)

    run_on_db(s, run)


@signing_cli.command("import-key")
def signing_import_key(profile: str = typer.Argument(..., help="Signing profile name (or its ARN)."),
                       key: Path = typer.Argument(..., help="PEM private key (ECDSA or RSA)."),
                       account: str = typer.Option(None, "--account", help="Account id; default: the default account."),
                       data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Use an existing private key for a signing profile (replaces its key); prints the public key."""
    from berth.scanning.signing import SigningService, profile_name

    s = settings(data_dir=data_dir, database_url=database_url)
    try:
        pem = key.read_bytes()
    except OSError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(1) from None

    from berth.keys.files import prepare_data_dir

    master, _ = prepare_data_dir(s)  # the private key is sealed with the deployment's master key

    async def run(db: Any) -> int:
        try:
            signer = SigningService(db, keys=master)
            public = await signer.import_key(account or s.default_account, profile_name(profile), pem)
        except (ValueError, TypeError) as e:
            typer.echo(f"berth: {key}: not a usable private key ({e})", err=True)
            return 1
        typer.echo(public, nl=False)
        return 0

    run_on_db(s, run)
