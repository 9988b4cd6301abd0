"""Package URLs (SBOM components, CSAF/OSV identification helpers) against `vers:` ranges.

Parsing is packageurl-python's (the reference implementation of the purl spec); the version
comparison is the ecosystem's own through univers where it is right, `versions.Version` otherwise
(see `versions.purl_range_contains`).
"""

from __future__ import annotations

from dataclasses import dataclass

from packageurl import PackageURL

from medsentry.vulns.match.versions import InvalidVersion, purl_range_contains

__all__ = ["InvalidPurl", "Purl", "purl_in_range"]

# purl type -> vers scheme, where they differ
_SCHEME = {"golang": "golang", "gem": "gem", "cargo": "cargo", "deb": "deb", "rpm": "rpm", "apk": "apk",
           "maven": "maven", "npm": "npm", "nuget": "nuget", "pypi": "pypi", "composer": "composer",
           "hex": "hex", "conan": "conan", "github": "github", "generic": "generic"}


class InvalidPurl(ValueError):
    """Not a package URL."""


@dataclass(frozen=True, slots=True)
class Purl:
    type: str
    namespace: str | None
    name: str
    version: str | None

    @classmethod
    def parse(cls, text: str) -> Purl:
        try:
            p = PackageURL.from_string(text.strip())
        except ValueError as exc:
            raise InvalidPurl(f"not a package URL: {text!r}: {exc}") from exc
        return cls(p.type, p.namespace, p.name, p.version)

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Identity without version; PyPI names compare normalised (PEP 503)."""
        name = self.name.lower().replace("_", "-").replace(".", "-") if self.type == "pypi" else self.name
        return self.type, self.namespace, name


def purl_in_range(purl: str | Purl, vers: str) -> bool:
    """Is the purl's version inside `vers`? The vers scheme must be the purl's ecosystem (or `generic`
    / `all`). Raises InvalidPurl / InvalidVersion for unusable input or a purl without version."""
    p = purl if isinstance(purl, Purl) else Purl.parse(purl)
    if not p.version:
        raise InvalidVersion(f"purl has no version: {purl}")
    scheme = vers[5:].partition("/")[0] if vers.startswith("vers:") else ""
    if scheme not in ("generic", "all", _SCHEME.get(p.type, p.type)):
        raise InvalidVersion(f"range {vers!r} is not for {p.type} packages")
    return purl_range_contains(vers, p.version)
