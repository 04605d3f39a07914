"""`berth gc`: one collection now, with the storage settings of `serve`, a progress bar and a report."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from berth.lifecycle.gc import Collector, Report


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def report_table(r: Report) -> Table:
    verb = "would free" if r.dry_run else "freed"
    title = "garbage collection" + (" (dry run)" if r.dry_run else "")
    table = Table("kind", f"objects {verb}", f"bytes {verb}", title=title)
    for kind, f in r.freed.items():
        table.add_row(kind, str(f.objects), f"{f.bytes} ({_bytes(f.bytes)})")
    table.add_row("total", str(r.objects), f"{r.bytes} ({_bytes(r.bytes)})", style="bold")
    return table


def report_json(r: Report, grace: float) -> str:
    return json.dumps({"dryRun": r.dry_run, "graceSeconds": grace, "seconds": round(r.seconds, 3),
                       "freed": {k: {"objects": f.objects, "bytes": f.bytes} for k, f in r.freed.items()},
                       "objects": r.objects, "bytes": r.bytes, "walked": r.walked, "candidates": r.candidates,
                       "spared": r.spared, "newlyUnrecorded": r.newly_unrecorded, "pins": r.pins,
                       "archivePlacements": r.placements})


async def run(collectors: AbstractAsyncContextManager[Collector], dry_run: bool, grace: float | None,
              as_json: bool = False) -> Report:
    """One collection with the collector `collectors` opens (berth/app.py `open_collector`)."""
    async with collectors as gc:
        if grace is not None:
            gc.grace = grace
        err = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=as_json) as bar:
            tasks = {"walk": bar.add_task("walking storage", total=None),
                     "sweep": bar.add_task("sweeping records", total=None)}

            def progress(phase: str, done: int, total: int | None) -> None:
                bar.update(tasks[phase], completed=done, total=total)

            report = await gc.collect(dry_run, progress)
        if as_json:
            print(report_json(report, gc.grace))
            return report
        out = Console()
        out.print(report_table(report))
        out.print(f"{report.walked} objects in storage, {report.candidates} past the grace period of "
                  f"{gc.grace:.0f} s, {report.spared} made live again meanwhile; {report.newly_unrecorded} "
                  f"unrecorded objects {'found' if dry_run else 'recorded (collected once that old)'}; "
                  f"{report.seconds:.1f} s")
        if report.placements:
            out.print(f"{report.placements} blobs in the archive store that active images use: queued to come back")
        return report
