"""PHI exposure: HL7 PID/NK1/PV1 segments, DICOM patient attributes and FHIR Patient resources seen in
clear text, and any of them going to a destination outside the hospital's address space.

Only field names, a count of distinct patients and at most `phi.max_hashes` salted patient hashes are kept.
In-hospital exposure is one alert per service (the server side of the connection: "HL7 on ehr:2575 carries
PHI in clear"), its peers as victims; PHI leaving the address space is one alert per sender and
destination, the sender as attacker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medsentry.detect.engine import by_sender, endpoint
from medsentry.detect.state import Lru
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector


class Phi:
    KINDS = ("hl7.message", "dicom.command", "http.request")

    def __init__(self, det: Detector) -> None:
        self.det = det
        cfg = det.cfg
        self.resources = {str(r) for r in cfg.get("phi", "fhir_resources")}
        self.max_hashes = int(cfg.get("phi", "max_hashes"))
        self.allowed = {str(e) for e in cfg["trusted"]["ehr_endpoints"] or []}
        self.patients: Lru[tuple[Any, ...], tuple[set[str], list[str]]] = Lru(
            int(cfg["limits"]["sources"]), "phi.patients", det.evictions
        )

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
        self.det.hit(
            "phi.external",
            obs.ts,
            explanation=f"{obs.src_ip} sent patient data ({what}: {', '.join(sorted(set(fields))[:8])}) in "
            "clear text to "
            f"{obs.dst_ip}:{obs.dport}, outside the hospital's address space"
            f"{f' ({n} patients so far)' if n else ''}. "
            "Possible exfiltration.",
            **by_sender(obs, phi_fields=sorted(set(fields))[:16], patients=n, patient_hashes=hashes),
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
        self.det.hit(
            "phi.cleartext",
            obs.ts,
            endpoint(smac, sip),
            [endpoint(pmac, pip)],
            f"{what} traffic of the service {sip}:{sport} carries patient data in clear text "
            f"({', '.join(sorted(set(fields))[:8])}{f'; {n} patient(s) so far' if n else ''}): anyone on the "
            "network path can "
            "read it. Values are not recorded, only field names and salted hashes.",
            evidence={
                "kind": obs.kind,
                "flow": f"{obs.src_ip}->{obs.dst_ip}:{obs.dport}",
                "phi_fields": sorted(set(fields))[:16],
                "patients": n,
                "patient_hashes": hashes,
            },
            group=sport,
            port=sport,
        )
