"""A Debian root filesystem with python3, assembled from this machine's own installed packages when the
machine runs the same Debian release (seconds, no network), as debootstrap's minbase would install them.

What it holds: every file `dpkg -L` lists for the Priority: required / Essential packages plus the ones
asked for and their dependency closure, the dpkg database entries of exactly those packages (status,
info/*), and what their maintainer scripts would have made (users and groups from base-passwd's master
files, the CA bundle, alternatives, /tmp and friends). Anything else on the machine is left out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

DPKG = Path("/var/lib/dpkg")
FIELDS = "${Package}\t${Priority}\t${Essential}\t${Status}\t${Pre-Depends}, ${Depends}\t${Provides}\n"


def host_release() -> str:
    """VERSION_CODENAME of this machine's Debian ("" when it is not Debian)."""
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return ""
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    return values.get("VERSION_CODENAME", "").strip('"') if values.get("ID") == "debian" else ""


def closure(extra: tuple[str, ...]) -> list[str] | None:
    """The installed packages a minbase root with `extra` needs; None when one of them is not installed."""
    out = subprocess.run(["dpkg-query", "-W", f"-f={FIELDS}"], capture_output=True, text=True,
                         check=True).stdout
    deps: dict[str, str] = {}
    provides: dict[str, str] = {}
    base = []
    for line in out.splitlines():
        name, priority, essential, status, depends, provided = line.split("\t")
        if not status.endswith(" installed"):
            continue
        deps[name] = depends
        for p in provided.split(","):
            provides.setdefault(p.strip().split(" ")[0], name)
        if priority == "required" or essential == "yes":
            base.append(name)
    if any(p not in deps for p in extra):
        return None
    todo, seen = [*base, *extra], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for alternatives in filter(None, (d.strip() for d in deps[name].split(","))):
            for choice in alternatives.split("|"):  # the first alternative that is installed
                dep = choice.strip().split(" ")[0].split(":")[0]
                if dep in deps or dep in provides:
                    todo.append(dep if dep in deps else provides[dep])
                    break
            else:
                return None  # a dependency this machine does not have: not a complete root
    return sorted(seen)


def _info_files(name: str) -> list[Path]:
    return sorted(p for p in (DPKG / "info").glob(f"{name}*")
                  if p.name.rsplit(".", 1)[0] in (name, f"{name}:amd64", f"{name}:all"))


def assemble(root: Path, packages: list[str]) -> None:
    """Copy the packages' files from / into `root` (an empty or missing directory)."""
    root.mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):  # merged /usr, as bookworm's debootstrap makes it
        if os.path.islink(f"/{link}"):
            (root / "usr" / link).mkdir(parents=True, exist_ok=True)
            (root / link).symlink_to(f"usr/{link}")
    paths: set[str] = set()
    for name in packages:
        lists = [p for p in _info_files(name) if p.suffix == ".list"]
        for lst in lists:
            paths.update(line for line in lst.read_text().splitlines() if line and line != "/.")
    for path, _, owner in _diversions():  # a path another package diverted holds that package's file
        if owner not in packages:
            paths.discard(path)
    paths.update(["/etc/ssl/certs"])  # update-ca-certificates' output (links and bundle), made on the host
    with tempfile.NamedTemporaryFile("w", suffix=".files", delete=False) as f:
        f.write("".join(p.lstrip("/") + "\n" for p in sorted(paths) if os.path.lexists(p)))
    listing = Path(f.name)
    pack = subprocess.Popen(["tar", "-C", "/", "--no-recursion", "-cf", "-", "-T", str(listing)],
                            stdout=subprocess.PIPE)
    subprocess.run(["tar", "-C", str(root), "--keep-directory-symlink", "-xpf", "-"], stdin=pack.stdout,
                   check=True)
    assert pack.wait() == 0, "tar of the host's package files failed"
    subprocess.run(["cp", "-a", "/etc/ssl/certs/.", str(root / "etc/ssl/certs")], check=True)
    listing.unlink()
    _dpkg_database(root, packages)
    _accounts(root)
    _alternatives(root)
    for d, mode in (("tmp", 0o1777), ("var/tmp", 0o1777), ("root", 0o700), ("proc", 0o555), ("sys", 0o555),
                    ("dev", 0o755), ("run", 0o755), ("home", 0o755)):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(mode)
    subprocess.run(["ldconfig", "-r", str(root)], check=False, capture_output=True)


def _dpkg_database(root: Path, packages: list[str]) -> None:
    wanted = set(packages)
    entries = (DPKG / "status").read_text().split("\n\n")
    kept = [e for e in entries if e.startswith("Package: ") and e.split("\n", 1)[0][9:] in wanted]
    db = root / "var/lib/dpkg"
    (db / "info").mkdir(parents=True, exist_ok=True)
    (db / "status").write_text("\n\n".join(e.strip("\n") for e in kept) + "\n\n")
    for name in ("available", "diversions", "statoverride"):
        (db / name).touch()
    for name in ("info/format", "arch"):  # the database's layout version (multiarch names) and its architectures
        if (DPKG / name).exists():
            shutil.copy2(DPKG / name, db / name)
    for name in packages:
        for p in _info_files(name):
            shutil.copy2(p, db / "info" / p.name)
    (db / "diversions").write_text("".join(f"{p}\n{to}\n{owner}\n" for p, to, owner in _diversions()
                                           if owner in wanted))


def _diversions() -> list[tuple[str, str, str]]:
    """dpkg's diversions on this machine: (path, where the diverted file went, the diverting package)."""
    lines = (DPKG / "diversions").read_text().splitlines()
    return [(lines[i], lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]


def _accounts(root: Path) -> None:
    """/etc/passwd, group, shadow and gshadow as base-passwd and passwd's postinst make them."""
    share = root / "usr/share/base-passwd"
    etc = root / "etc"
    passwd = (share / "passwd.master").read_text()
    group = (share / "group.master").read_text()
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    users = [line.split(":")[0] for line in passwd.splitlines() if line]
    groups = [line.split(":")[0] for line in group.splitlines() if line]
    (etc / "shadow").write_text("".join(f"{u}:*:19000:0:99999:7:::\n" for u in users))
    (etc / "gshadow").write_text("".join(f"{g}:*::\n" for g in groups))
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o640)


def _alternatives(root: Path) -> None:
    """The machine's alternatives whose chosen target is in the root (awk -> mawk, pager, ...)."""
    state = DPKG / "alternatives"
    (root / "etc/alternatives").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/alternatives").mkdir(parents=True, exist_ok=True)
    for chosen in sorted(Path("/etc/alternatives").iterdir()):
        if not chosen.is_symlink() or not (state / chosen.name).exists():
            continue
        target = os.readlink(chosen)
        if not os.path.lexists(root / target.lstrip("/")):
            continue
        (root / "etc/alternatives" / chosen.name).symlink_to(target)
        link = (state / chosen.name).read_text().splitlines()[1]  # the master link, e.g. /usr/bin/awk
        dest = root / link.lstrip("/")
        if not os.path.lexists(dest) and dest.parent.is_dir():
            dest.symlink_to(f"/etc/alternatives/{chosen.name}")
        shutil.copy2(state / chosen.name, root / "var/lib/dpkg/alternatives" / chosen.name)
