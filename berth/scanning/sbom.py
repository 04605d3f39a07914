"""An image's inventory as a CycloneDX SBOM (JSON), with package URLs: cyclonedx-python-lib and
packageurl-python, not hand-built JSON."""

from __future__ import annotations

import warnings

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot5
from packageurl import PackageURL

from berth.scanning.model import Inventory, OsRelease, Package


def purl(p: Package, os: OsRelease | None) -> PackageURL:
    distro = f"{os.id}-{os.version_id}" if os is not None and os.version_id else None
    if p.kind == "dpkg":
        q = {"distro": distro} if distro else {}
        if p.source and p.source != p.name:
            q["upstream"] = p.source
        return PackageURL("deb", os.id if os else "debian", p.name, p.version, q or None)
    if p.kind == "apk":
        return PackageURL("apk", "alpine", p.name, p.version, {"distro": distro} if distro else None)
    if p.kind == "rpm":
        return PackageURL("rpm", os.id if os else None, p.name, p.version, {"distro": distro} if distro else None)
    if p.kind == "python":
        return PackageURL("pypi", None, p.name, p.version)
    if p.kind == "npm":
        scope, _, name = p.name.rpartition("/")
        return PackageURL("npm", scope or None, name, p.version)
    if p.kind == "maven":
        group, _, artifact = p.name.rpartition(":")
        return PackageURL("maven", group or None, artifact, p.version)
    if p.kind == "go":
        ns, _, name = p.name.rpartition("/")
        return PackageURL("golang", ns or None, name, p.version)
    if p.kind == "cargo":
        return PackageURL("cargo", None, p.name, p.version)
    return PackageURL("generic", None, p.name, p.version)


def cyclonedx_json(inv: Inventory, image_name: str, digest: str, stable: bool = False) -> str:
    """`stable`: a serial number and timestamp derived from the digest, so the same image gives the same bytes
    (an SBOM pushed twice is one artifact)."""
    bom = Bom()
    if stable:
        import datetime
        import uuid

        bom.serial_number = uuid.uuid5(uuid.NAMESPACE_URL, f"berth:sbom:{digest}")
        bom.metadata.timestamp = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    root = Component(name=image_name, version=digest, type=ComponentType.CONTAINER, bom_ref=digest)
    bom.metadata.component = root
    components = []
    seen: set[str] = set()
    if inv.os is not None:
        osc = Component(name=inv.os.id, version=inv.os.version_id, type=ComponentType.OPERATING_SYSTEM,
                        bom_ref=f"os:{inv.os.id}:{inv.os.version_id}", description=inv.os.pretty_name or None)
        components.append(osc)
    for p in inv.packages:
        url = purl(p, inv.os)
        ref = f"{url.to_string()}#{p.path}"
        if ref in seen:
            continue
        seen.add(ref)
        props = [Property(name="berth:package:kind", value=p.kind),
                 Property(name="berth:file:path", value="/" + p.path)]
        if p.layer:
            props.append(Property(name="berth:layer:digest", value=p.layer))
        if p.source and p.source != p.name:
            props.append(Property(name="berth:package:source", value=f"{p.source} {p.source_version or ''}".strip()))
        group, _, name = (p.name.rpartition("/") if p.kind == "npm" else ("", "", p.name))
        components.append(Component(name=name, group=group or None, version=p.version, type=ComponentType.LIBRARY,
                                    purl=url, bom_ref=ref, properties=props))
    for c in components:
        bom.components.add(c)
    bom.register_dependency(root, components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return JsonV1Dot5(bom).output_as_string(indent=2)
