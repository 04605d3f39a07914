#!/usr/bin/env bash
# Installs the real clients and servers the tests drive (Debian, as root). Elsewhere it only
# reports what is missing; the tests then skip (or fail, under CI=true / BERTH_STRICT=1).
set -euo pipefail
pkgs=(skopeo umoci podman buildah uidmap docker-registry postgresql wrk radosgw ceph-mon ceph-osd libfaketime
      amazon-ecr-credential-helper golang-go libcommons-io-java rpm  # scanner tests: a Go binary, a jar, an rpmdb
      rustc binutils  # scanner tests: a Rust binary with cargo-auditable's section (rustc, and as to make it)
      python3-venv ca-certificates  # the container image test's base root: these host packages (bookworm), with
      debootstrap  # the minimal set, or debootstrap's root elsewhere
      docker-compose)  # `docker-compose config` validates compose.yaml (no engine needed)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "missing system packages (install them for the integration tests): ${missing[*]}" >&2
fi
