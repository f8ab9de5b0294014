"""Fetch the Debian packages that carry real German-English parallel text (no install).

``apt-get download PKG`` + ``dpkg -x PKG.deb DIR`` into a cache directory, default
``~/.cache/kd_nmt/debian``, overridable with the environment variable ``KD_NMT_CACHE``
(or the ``cache_dir`` argument).  Layout::

    CACHE/debs/PKG_VERSION_all.deb
    CACHE/root/PKG/...                 # dpkg -x output
    CACHE/root/PKG/.kd_nmt-extracted   # JSON stamp: package, version, deb file name

A package whose stamp exists is not downloaded again.  Versions come from
``dpkg-deb -f PKG.deb Version``; Debian serves only the newest version, so record them next to
anything built from these files (build_corpus writes them into MANIFEST.json).

CLI: ``python -m data.debian_sources [--cache DIR]`` fetches all and prints the versions.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, Iterable, Optional

from .kd_nmt_stdlib import report_errors

PACKAGES = ("libreoffice-help-en-us", "libreoffice-help-de", "trans-de-en", "libreoffice-l10n-de")

LICENSES = {
    "libreoffice-help-en-us": "MPL-2.0",
    "libreoffice-help-de": "MPL-2.0",
    "trans-de-en": "GPL-2+",
    "libreoffice-l10n-de": "MPL-2.0",
}

STAMP = ".kd_nmt-extracted"


class DebianSourceError(RuntimeError):
    """Raised when a package cannot be fetched or unpacked; the message says what to do."""


def cache_dir(path: Optional[str] = None) -> str:
    """The cache root: ``path``, else ``$KD_NMT_CACHE``, else ``~/.cache/kd_nmt/debian``."""
    p = path or os.environ.get("KD_NMT_CACHE") or os.path.join("~", ".cache", "kd_nmt", "debian")
    return os.path.abspath(os.path.expanduser(p))


def package_root(pkg: str, cache: Optional[str] = None) -> str:
    return os.path.join(cache_dir(cache), "root", pkg)


def _run(cmd, cwd=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
    except FileNotFoundError as e:
        raise DebianSourceError(
            f"`{cmd[0]}` is not available ({e}). The corpus is built from Debian packages "
            "fetched with apt-get/dpkg, so this needs a Debian/Ubuntu machine. Alternatively "
            "set KD_NMT_CACHE to a directory that already holds the extracted packages "
            "(CACHE/root/PKG/.kd_nmt-extracted stamps).") from None


def deb_version(deb_path: str) -> str:
    """``dpkg-deb -f DEB Version``."""
    r = _run(["dpkg-deb", "-f", deb_path, "Version"])
    if r.returncode != 0:
        raise DebianSourceError(f"dpkg-deb -f {deb_path} Version failed: {r.stderr.strip()}")
    return r.stdout.strip()


def read_stamp(pkg: str, cache: Optional[str] = None) -> Optional[dict]:
    path = os.path.join(package_root(pkg, cache), STAMP)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _apt_download(pkg: str, debs: str) -> None:
    r = _run(["apt-get", "download", pkg], cwd=debs)
    if r.returncode == 0:
        return
    first_err = r.stderr.strip()
    # a fresh machine often has no package lists yet: update once (needs root) and retry
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        u = _run(["apt-get", "update", "-qq"])
        if u.returncode == 0:
            r = _run(["apt-get", "download", pkg], cwd=debs)
            if r.returncode == 0:
                return
    raise DebianSourceError(
        f"`apt-get download {pkg}` failed (exit {r.returncode}):\n{r.stderr.strip() or first_err}\n"
        "Hint: run `apt-get update` once (as root) so apt knows the package, and check that a "
        "Debian mirror is reachable.")


def fetch_package(pkg: str, cache: Optional[str] = None, log=print) -> dict:
    """Download and extract one package unless already extracted; return its stamp dict."""
    stamp = read_stamp(pkg, cache)
    if stamp is not None:
        return stamp
    root = cache_dir(cache)
    debs = os.path.join(root, "debs")
    os.makedirs(debs, exist_ok=True)
    pattern = os.path.join(debs, f"{pkg}_*.deb")
    found = sorted(glob.glob(pattern))
    if not found:
        log(f"[debian] apt-get download {pkg}")
        _apt_download(pkg, debs)
        found = sorted(glob.glob(pattern))
        if not found:
            raise DebianSourceError(f"apt-get download {pkg} succeeded but no {pattern} appeared")
    deb = found[-1]
    version = deb_version(deb)
    dest = package_root(pkg, cache)
    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    log(f"[debian] dpkg -x {os.path.basename(deb)}")
    r = _run(["dpkg", "-x", deb, tmp])
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DebianSourceError(f"dpkg -x {deb} failed: {r.stderr.strip()}")
    stamp = {"package": pkg, "version": version, "deb": os.path.basename(deb),
             "license": LICENSES.get(pkg, "unknown")}
    with open(os.path.join(tmp, STAMP), "w", encoding="utf-8") as f:
        json.dump(stamp, f, indent=1, sort_keys=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return stamp


def fetch_all(packages: Iterable[str] = PACKAGES, cache: Optional[str] = None,
              log=print) -> Dict[str, dict]:
    """Fetch every package; ``{pkg: {"package", "version", "deb", "license"}}``."""
    return {p: fetch_package(p, cache, log) for p in packages}


def source_paths(cache: Optional[str] = None) -> Dict[str, str]:
    """Where the extracted text lives inside the cache."""
    return {
        "help_en": os.path.join(package_root("libreoffice-help-en-us", cache),
                                "usr/share/libreoffice/help/en-US"),
        "help_de": os.path.join(package_root("libreoffice-help-de", cache),
                                "usr/share/libreoffice/help/de"),
        "ding": os.path.join(package_root("trans-de-en", cache), "usr/share/trans/de-en"),
        "ui_mo": os.path.join(package_root("libreoffice-l10n-de", cache),
                              "usr/lib/libreoffice/program/resource/de/LC_MESSAGES"),
    }


def main(argv=None) -> int:
    """Its status; an OSError (full disk, read-only cache) is one line ``debian_sources: error: ...``."""
    return report_errors("debian_sources", _main, argv)


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=None, help="cache dir (default $KD_NMT_CACHE or "
                    "~/.cache/kd_nmt/debian)")
    args = ap.parse_args(argv)
    try:
        stamps = fetch_all(cache=args.cache, log=lambda m: print(m, file=sys.stderr))
    except DebianSourceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for pkg, st in stamps.items():
        print(f"{pkg}\t{st['version']}\t{st['license']}")
    print(f"cache: {cache_dir(args.cache)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
