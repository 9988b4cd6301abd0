"""PHI exposure: HL7 PID/NK1/PV1 segments, DICOM patient attributes and FHIR Patient resources seen in
clear text, and any of them going to a destination outside the hospital's address space.

Only field names, a count of distinct patients and at most `phi.max_hashes` salted patient hashes are kept.
In-hospital exposure is one alert per service (the server side of the connection: "HL7 on ehr:2575 carries
PHI in clear"), its peers as victims; PHI leaving the address space is one alert per sender and
destination, the sender as attacker.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from medsentry.detect.engine import by_sender, endpoint
from medsentry.detect.state import Lru
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector


class Phi:
    KINDS: tuple[str, ...] = ("hl7.message", "dicom.command", "http.request")

    def __init__(self, det: Detector) -> None:
        self.det = det
        cfg = det.cfg
        self.resources = {str(r) for r in cfg.get("phi", "fhir_resources")}
        self.max_hashes = int(cfg.get("phi", "max_hashes"))
        self.allowed = {str(e) for e in cfg["trusted"]["ehr_endpoints"] or []}
        self.patients: Lru[tuple[Any, ...], tuple[set[str], list[str]]] = Lru(
            int(cfg["limits"]["sources"]), "phi.patients", det.evictions
        )
        # field names as given -> (first 16 sorted, the first 8 joined): a few combinations recur per message
        self._names: dict[tuple[Any, ...], tuple[list[str], str]] = {}

    def add(self, obs: Observation) -> None:
        f = obs.fields
        if obs.kind == "hl7.message":
            fields = list(f.get("phi_fields_present") or []) or list(f.get("phi_segments") or [])
            what = "HL7 v2"
        elif obs.kind == "dicom.command":
            fields = list(f.get("patient_attributes_present") or [])
            what = "DICOM"
        else:
            res = f.get("fhir_resource")
            fields = [f"FHIR {res}"] if res in self.resources else []
            what = "FHIR/HTTP"
        if not fields:
            return
        outside = not self.det.cfg.is_local(obs.dst_ip) and not self._allowed(obs.dst_ip, obs.dport)
        if outside:
            self._external(obs, what, fields)
        self._cleartext(obs, what, fields)

    def _sorted_names(self, fields: list[str]) -> tuple[list[str], str]:
        """The first 16 sorted distinct names and the first 8 of them joined. The list is shared by every
        evidence item made from the same names: an open item given the very list it holds skips the merge,
        which for sorted distinct strings would give that list again."""
        key = tuple(fields)
        hit = self._names.get(key)
        if hit is None:
            names = sorted(set(fields))[:16]
            hit = (names, ", ".join(names[:8]))  # a name that is no string raises here, as it did in the text
            if len(self._names) < 4096:
                self._names[key] = hit
        return hit

    def _allowed(self, ip: str | None, port: int | None) -> bool:
        return ip in self.allowed or f"{ip}:{port}" in self.allowed

    def _count(self, key: tuple[Any, ...], h: Any) -> tuple[int, list[str]]:
        """Distinct patients of a service or destination (up to 10000) and the first few hashes."""
        seen, first = self.patients.touch(key, lambda: (set(), []))
        if isinstance(h, str) and h not in seen and len(seen) < 10000:
            seen.add(h)
            if len(first) < self.max_hashes:
                first.append(h)
        return len(seen), first

    def _external(self, obs: Observation, what: str, fields: list[str]) -> None:
        n, hashes = self._count(("ext", obs.src_ip, obs.dst_ip), obs.fields.get("patient_id_hash"))
        names, joined = self._sorted_names(fields)
        self.det.hit(
            "phi.external",
            obs.ts,
            explanation=partial(_external_text, obs.src_ip, what, joined, obs.dst_ip, obs.dport, n),
            **by_sender(obs, phi_fields=names, patients=n, patient_hashes=hashes),
            group=obs.dst_ip,
            port=obs.dport,
        )

    def _cleartext(self, obs: Observation, what: str, fields: list[str]) -> None:
        # the service is the side with the lower port (MLLP 2575, DICOM 104/11112, HTTP 80/8080)
        if (obs.sport or 0) < (obs.dport or 0):
            smac, sip, sport, pmac, pip = obs.src_mac, obs.src_ip, obs.sport, obs.dst_mac, obs.dst_ip
        else:
            smac, sip, sport, pmac, pip = obs.dst_mac, obs.dst_ip, obs.dport, obs.src_mac, obs.src_ip
        n, hashes = self._count(("svc", sip, sport), obs.fields.get("patient_id_hash"))
        names, joined = self._sorted_names(fields)
        self.det.hit(
            "phi.cleartext",
            obs.ts,
            endpoint(smac, sip),
            [endpoint(pmac, pip)],
            # formatted only when the alert is read: nearly every hit just counts into the open alert
            partial(_cleartext_text, what, sip, sport, joined, n),
            evidence={
                "kind": obs.kind,
                "flow": f"{obs.src_ip}->{obs.dst_ip}:{obs.dport}",
                "phi_fields": names,
                "patients": n,
                "patient_hashes": hashes,
            },
            group=sport,
            port=sport,
        )


def _external_text(
    src: str | None, what: str, joined: str, dst: str | None, dport: int | None, n: int
) -> str:
    return (
        f"{src} sent patient data ({what}: {joined}) in clear text to {dst}:{dport}, outside the hospital's "
        f"address space{f' ({n} patients so far)' if n else ''}. Possible exfiltration."
    )


def _cleartext_text(what: str, sip: str | None, sport: int | None, joined: str, n: int) -> str:
    return (
        f"{what} traffic of the service {sip}:{sport} carries patient data in clear text "
        f"({joined}{f'; {n} patient(s) so far' if n else ''}): anyone on the network path can read it. "
        "Values are not recorded, only field names and salted hashes."
    )
