#!/usr/bin/env python3
"""Known-answer evaluation of CSAF matching (medsentry.vulns.match.csaf) on the CISA ICSMA advisories.

For every product an advisory lists as affected, synthetic devices are built from the advisory's own
product tree: vendor as the advisory spells it, model = the product name, and versions picked from the
parsed version condition:
* inside: per interval its inclusive upper bound, else the version just below an exclusive upper
  bound (`< 8.2.2` -> 8.2.1, `< 3.0` -> 2.9), else the lower bound; any version ("1.0") when the
  product has no version condition (all versions, model variants, dates of manufacture);
* outside (fixed): the exclusive upper bound itself, the version just above an inclusive one, the
  version just below a lower bound -- only where no other entry of the same product in the same
  advisory covers it (`9.7` next to `<= 9.33`).
Each device is matched against ALL advisories, so cross-advisory false positives count. Expected
findings: the advisory's CVEs for that product for inside versions, none from it for outside ones.

Two precision figures: *strict* counts every finding outside the device's own advisory as false;
*same product* accepts a finding from another advisory when it lists a product of the same vendor
family with the same name (ignoring case, spacing, punctuation) whose version condition holds -- that
advisory really says so (e.g. MyCareLink 24950 in ICSMA-18-179-01 and ICSMA-18-219-01).

Usage: scripts/eval_icsma.py [CSAF_DIR] [--markdown FILE] [--list-misses]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medsentry.identify.oui import normalize_vendor
from medsentry.vulns.match.csaf import AFFECTED_STATUSES, Advisory, CsafMatch, CsafProduct
from medsentry.vulns.match.ranges import RangeSpec
from medsentry.vulns.match.vendors import strip_vendor_prefix
from medsentry.vulns.match.versions import InvalidVersion, Version

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vulns" / "csaf-icsma"
ANY_VERSION = "1.0"


def bump(text: str, delta: int) -> str | None:
    """The version next to `text` in its last component: bump("8.2.2", -1) == "8.2.1",
    bump("3.0", -1) == "2.9", bump("C.00.04", +1) == "C.00.05", bump("K", -1) == "J"."""
    runs = list(re.finditer(r"\d+|[A-Za-z]+", text))
    if not runs:
        return None
    if delta > 0:
        last = runs[-1]
        return text[: last.start()] + _step(last.group(), 1) + text[last.end() :]
    # Decrement with borrow: 3.0 -> 2.9, 2.0.0 -> 1.9.9, 1.10 -> 1.09
    for i in range(len(runs) - 1, -1, -1):
        tok = runs[i].group()
        if (tok.isdigit() and int(tok) > 0) or (tok.isalpha() and tok[-1].lower() != "a"):
            out = text[: runs[i].start()] + _step(tok, -1)
            tail = text[runs[i].end() :]
            tail = re.sub(r"\d+", lambda m: "9" * len(m.group()), tail)
            return out + tail
    return None


def _step(tok: str, delta: int) -> str:
    if tok.isdigit():
        return str(int(tok) + delta).zfill(len(tok))
    return tok[:-1] + chr(ord(tok[-1]) + delta)


def inside_versions(spec: RangeSpec) -> list[str]:
    if not spec.versioned or spec.range is None:
        return [ANY_VERSION]
    out: list[str] = []
    for iv in spec.range.intervals:
        if iv.hi is not None:
            pick = iv.hi.text if iv.hi_incl else bump(iv.hi.text, -1)
        elif iv.lo is not None:
            pick = iv.lo.text if iv.lo_incl else bump(iv.lo.text, 1)
        else:
            pick = ANY_VERSION
        if pick:
            out.append(pick)
    return out


def outside_versions(spec: RangeSpec) -> list[str]:
    if not spec.versioned or spec.range is None:
        return []
    out: list[str] = []
    for iv in spec.range.intervals:
        if iv.hi is not None:
            out.append(iv.hi.text if not iv.hi_incl else bump(iv.hi.text, 1) or "")
        if iv.lo is not None:
            out.append(bump(iv.lo.text, -1) or "" if iv.lo_incl else iv.lo.text)
    return [v for v in out if v]


def _in(spec: RangeSpec, version: str) -> bool:
    try:
        return spec.range is not None and spec.range.contains(Version(version))
    except InvalidVersion:
        return False


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", re.sub(r"\([^()]*\)", "", text).casefold())


def _same_name(a: str, b: str) -> bool:
    """Same letters and digits, parenthesised remarks ignored ("Pyxis SupplyStation (including RF)")."""
    return _compact(a) == _compact(b)


@dataclass
class Device:
    advisory: str
    product: CsafProduct
    version: str
    inside: bool
    expected: frozenset[str]  # CVE ids of its own advisory


@dataclass
class Report:
    advisories: int = 0
    products: int = 0
    devices_inside: int = 0
    devices_outside: int = 0
    tp: int = 0
    fn: int = 0
    fp_strict: int = 0
    fp_same_product: int = 0
    candidates: int = 0
    unparsed: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    same_product: list[str] = field(default_factory=list)
    tp_identified: int = 0  # expected findings met with vendor/model spelled as identification would
    misses_identified: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def recall_identified(self) -> float:
        return self.tp_identified / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def precision_strict(self) -> float:
        found = self.tp + self.fp_strict
        return self.tp / found if found else 1.0

    @property
    def precision(self) -> float:
        found = self.tp + self.fp_strict
        return (self.tp + self.fp_same_product) / found if found else 1.0


def load(csaf_dir: Path) -> list[Advisory]:
    return [Advisory(json.loads(p.read_text("utf-8"))) for p in sorted(csaf_dir.rglob("*.json"))]


def build_devices(advisories: list[Advisory], report: Report) -> list[Device]:
    devices: list[Device] = []
    for adv in advisories:
        affected_by: dict[str, set[str]] = {}
        for v in adv.vulns:
            for pid, status in v.status.items():
                if status in AFFECTED_STATUSES:
                    affected_by.setdefault(pid, set()).add(v.id)
        for pid, cves in sorted(affected_by.items()):
            p = adv.products.get(pid)
            if p is None:
                continue
            report.products += 1
            report.kinds[p.spec.kind] += 1
            if p.spec.kind == "unknown":
                report.unparsed.append(f"{adv.id} {p.name!r}: {p.spec.text!r}")
            for ver in dict.fromkeys(inside_versions(p.spec)):
                devices.append(Device(adv.id, p, ver, True, frozenset(cves)))
            siblings = [
                q
                for q in adv.products.values()
                if q.product_id != pid and q.product_id in affected_by and _same_name(q.name, p.name)
            ]
            for ver in dict.fromkeys(outside_versions(p.spec)):
                if _in(p.spec, ver) or any(_in(q.spec, ver) or not q.spec.versioned for q in siblings):
                    continue
                devices.append(Device(adv.id, p, ver, False, frozenset()))
    return devices


def _legit_elsewhere(m: CsafMatch, adv_by_id: dict[str, Advisory], dev: Device) -> bool:
    """Another advisory names the same product of the same vendor family, and its condition holds."""
    other = adv_by_id[m.advisory].products.get(m.product_id)
    if other is None or not (other.families & dev.product.families):
        return False
    names = [other.name, *(f"{other.name} {v}" for v in other.variants)]
    return m.reason.startswith("name") and any(_same_name(n, dev.product.name) for n in names)


def run(csaf_dir: Path) -> Report:
    report = Report()
    advisories = load(csaf_dir)
    report.advisories = len(advisories)
    adv_by_id = {a.id: a for a in advisories}
    for dev in build_devices(advisories, report):
        if dev.inside:
            report.devices_inside += 1
        else:
            report.devices_outside += 1
        found: dict[tuple[str, str], CsafMatch] = {}
        for adv in advisories:
            for m in adv.match(dev.product.vendor, dev.product.name, dev.version):
                if m.affected:
                    found[(m.advisory, m.cve)] = m
                elif m.status in AFFECTED_STATUSES:
                    report.candidates += 1
        expected = {(dev.advisory, c) for c in dev.expected}
        label = f"{dev.advisory} {dev.product.vendor!r} {dev.product.name!r} version {dev.version!r}"
        for key in sorted(expected - found.keys()):
            report.fn += 1
            report.misses.append(f"{label} [{dev.product.spec.text}]: missed {key[1]}")
        report.tp += len(expected & found.keys())
        for key in sorted(found.keys() - expected):
            report.fp_strict += 1
            m = found[key]
            if key[0] != dev.advisory and _legit_elsewhere(m, adv_by_id, dev):
                report.fp_same_product += 1
                report.same_product.append(f"{label}: {key[0]} {key[1]} via {m.reason}")
            else:
                report.false_positives.append(f"{label}: {key[0]} {key[1]} via {m.reason}")
        if dev.inside:
            _as_identified(dev, advisories, expected, report)
    return report


def as_identified(vendor: str, product: str) -> tuple[str, str]:
    """The device as identification would name it: the vendor display name of data/vendors.yaml
    ("Becton, Dickinson and Company (BD)" -> "BD"), the model without the vendor/brand prefix, in
    lower case, punctuation as spaces ("BD Pyxis MedStation ES" -> "pyxis medstation es")."""
    model = re.sub(r"[^0-9a-z]+", " ", strip_vendor_prefix(product).casefold()).strip()
    return normalize_vendor(vendor) or vendor, model or product


def _as_identified(
    dev: Device, advisories: list[Advisory], expected: set[tuple[str, str]], r: Report
) -> None:
    vendor, model = as_identified(dev.product.vendor, dev.product.name)
    found = {
        (m.advisory, m.cve) for adv in advisories for m in adv.match(vendor, model, dev.version) if m.affected
    }
    r.tp_identified += len(expected & found)
    for key in sorted(expected - found):
        r.misses_identified.append(f"{dev.advisory} {vendor!r} {model!r} {dev.version!r}: missed {key[1]}")


def markdown(r: Report) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(r.kinds.items()))
    return f"""## CISA ICSMA matching

Known-answer test of CSAF matching (`medsentry.vulns.match.csaf`) on the {r.advisories} CISA ICSMA CSAF
advisories of `shared/data/vulns/csaf-icsma/`. For each of the {r.products} affected products a synthetic
device (advisory vendor, product name, a version picked from the product's own version text) is matched
against **all** advisories. {r.devices_inside} devices carry a version inside the affected range (they must
get exactly that advisory's CVEs for that product), {r.devices_outside} a fixed version or one outside the
range (they must get none of them). Version texts by kind: {kinds}. Reproduce with
`.venv/bin/python scripts/eval_icsma.py --markdown FILE`; `tests/vulns/test_icsma.py` holds the targets.

| measure | value |
|---|---:|
| expected findings met (recall) | {r.tp} / {r.tp + r.fn} = {100 * r.recall:.1f} % |
| recall with vendor and model spelled as identification reports them | {100 * r.recall_identified:.1f} % |
| precision, findings outside the device's own advisory all counted false | {100 * r.precision_strict:.1f} % |
| precision, a same-named product of another advisory counts as right | {100 * r.precision:.1f} % |
| findings from other advisories for the same product name | {r.fp_same_product} |
| other false positives | {r.fp_strict - r.fp_same_product} |
| candidates below the confidence threshold (not findings) | {r.candidates} |
| version texts that could not be read | {len(r.unparsed)} |

The second recall line renames each inside device the way device identification would: the vendor
through `data/vendors.yaml` ("Becton, Dickinson and Company (BD)" -> "BD", "General Electric (GE)" -> "GE")
and the model in lower case without vendor/brand prefix or punctuation ("BD Pyxis MedStation ES" ->
"pyxis medstation es").

How versions are picked: inside = the inclusive upper bound, or just below an exclusive one
(`< 8.2.2` -> `8.2.1`, `< 3.0` -> `2.9`), or the lower bound; outside = the exclusive upper bound,
just above an inclusive one, just below a lower bound, skipped when another entry of the same product
in the same advisory covers it. The picks come from the same range parser the matcher uses, so a parser
that misreads a text consistently is not caught here; `tests/vulns/test_versions.py` therefore also checks
hand-picked versions for real ICSMA texts. Products without a version condition (all versions, model
variants, dates of manufacture) get no "outside" device.

What the figures do not show: every synthetic device names its product exactly as the advisory does
(up to case, punctuation and a vendor prefix); a model string that only shares words with a product
is a *candidate* (confidence < 0.75), which is why the candidate count is high and is not in
precision. The remaining false positives are "Change Healthcare Cardiology" versions outside 14.1.x
matched to the same advisory's "McKesson Cardiology 14.x" (both reduce to "Cardiology" once the
aliased vendor names are removed).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csaf_dir", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--markdown", type=Path, help="write the accuracy section to this file")
    ap.add_argument("--list-misses", action="store_true")
    a = ap.parse_args(argv)
    if not a.csaf_dir.is_dir():
        print(f"no CSAF directory at {a.csaf_dir}", file=sys.stderr)
        return 2
    r = run(a.csaf_dir)
    print(
        f"advisories {r.advisories}, products {r.products}, devices {r.devices_inside} inside / "
        f"{r.devices_outside} outside"
    )
    print(
        f"recall {100 * r.recall:.1f}% ({r.tp}/{r.tp + r.fn}), precision strict "
        f"{100 * r.precision_strict:.1f}%, same-product {100 * r.precision:.1f}%, candidates {r.candidates}"
    )
    print(f"recall with identification's spelling {100 * r.recall_identified:.1f}%")
    if a.list_misses or r.misses:
        for line in r.misses:
            print("MISS", line)
        for line in r.misses_identified:
            print("MISS-ID", line)
    if a.list_misses:
        for line in r.false_positives:
            print("FP  ", line)
        for line in r.same_product:
            print("SAME", line)
        for line in r.unparsed:
            print("UNPARSED", line)
    if a.markdown:
        a.markdown.write_text(markdown(r), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
