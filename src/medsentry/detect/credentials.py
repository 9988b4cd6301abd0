"""Cleartext credentials and weak channels: Telnet/FTP/HTTP Basic/MQTT passwords sent in clear (the
dissectors only report that a secret was present; nothing of it reaches here) and NTLM over plain HTTP;
TLS 1.1 or older negotiated, self-signed or expired server certificates (medium on clinical ports, low
elsewhere), SMB version 1 accepted by a server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from medsentry.detect.engine import by_sender, by_server
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector

_TLS_NAMES: Final = {
    0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"
}


class Credentials:
    KINDS: tuple[str, ...] = (
        "ftp.login",
        "telnet.login",
        "http.request",
        "mqtt.connect",
        "tls.server_hello",
        "tls.certificate",
        "smb.negotiate",
    )

    def __init__(self, det: Detector) -> None:
        self.det = det
        self.max_weak = int(det.cfg.get("tls", "max_weak_version"))
        self.clinical = {int(p) for p in det.cfg.get("tls", "clinical_ports")}

    def add(self, obs: Observation) -> None:
        f = obs.fields
        kind = obs.kind
        if kind in ("ftp.login", "telnet.login"):
            if f.get("password_present"):
                self._cred(obs, kind.split(".")[0].upper() + " login", "success" in f and bool(f["success"]))
        elif kind == "http.request":
            if f.get("basic_auth_present"):
                self._cred(obs, "HTTP Basic authentication", None)
            elif f.get("ntlm") == "authenticate":
                # Not a password, but as good as one on the path: the exchange can be relayed to another
                # server as it happens, and the response cracked offline (NTLMv1 in minutes).
                self._cred(obs, "HTTP NTLM authentication", None,
                           f"{obs.src_ip} authenticated to {obs.dst_ip}:{obs.dport} with NTLM over plain "
                           "HTTP: anyone on the path can relay the exchange or crack its response offline. "
                           "Nothing of it is recorded.")  # fmt: skip
        elif kind == "mqtt.connect":
            if f.get("password_present"):
                self._cred(obs, "MQTT CONNECT password", None)
        elif kind == "tls.server_hello":
            self._version(obs)
        elif kind == "smb.negotiate":
            if f.get("smb1") is True:
                self._smb1(obs)
        else:
            self._certificate(obs)

    def _cred(self, obs: Observation, what: str, success: bool | None, explanation: str | None = None
              ) -> None:  # fmt: skip
        outcome = " and the login succeeded" if success else ""
        self.det.hit(
            "cred.cleartext",
            obs.ts,
            explanation=explanation
            or f"{obs.src_ip} sent a password in clear text to {obs.dst_ip}:{obs.dport} ({what}){outcome}: "
            "anyone on the path can read it. The secret itself is not recorded.",
            **by_sender(obs, protocol=what, login_succeeded=success),
            group=(obs.dst_ip, obs.kind),
            severity="high" if success else None,
            port=obs.dport,
        )

    def _version(self, obs: Observation) -> None:
        version = obs.fields.get("version")
        if not isinstance(version, int) or version > self.max_weak:
            return
        name = _TLS_NAMES.get(version, hex(version))
        # the ServerHello goes server -> client: the server is the one that accepted the old protocol
        self.det.hit(
            "weak.tls_version",
            obs.ts,
            explanation=f"{obs.src_ip}:{obs.sport} negotiated {name} with {obs.dst_ip}: a protocol version "
            "with known weaknesses (retired by RFC 8996).",
            **by_server(obs, version=name),
            group=obs.sport,
            port=obs.sport,
        )

    def _smb1(self, obs: Observation) -> None:
        # the negotiate response goes server -> client: the server still speaks the old protocol
        self.det.hit(
            "weak.smb1",
            obs.ts,
            explanation=f"{obs.src_ip}:{obs.sport} accepted SMB version 1 from {obs.dst_ip}: the protocol "
            "WannaCry and NotPetya spread through (MS17-010), deprecated by Microsoft; imaging consoles and "
            "old Windows workstations are where it lingers.",
            **by_server(obs),
            group=obs.sport,
            port=obs.sport,
        )

    def _certificate(self, obs: Observation) -> None:
        f = obs.fields
        problems = []
        if f.get("self_signed"):
            problems.append("self-signed")
        after, before = f.get("not_after"), f.get("not_before")
        if isinstance(after, (int, float)) and after < obs.ts:
            problems.append("expired")
        if isinstance(before, (int, float)) and before > obs.ts:
            problems.append("not yet valid")
        if not problems:
            return
        clinical = obs.sport in self.clinical
        self.det.hit(
            "weak.certificate",
            obs.ts,
            explanation=f"{obs.src_ip}:{obs.sport} presents a {' and '.join(problems)} certificate: clients "
            "cannot tell it from an impostor's, so a man in the middle goes unnoticed.",
            **by_server(obs, problems=problems, sha256=f.get("sha256")),
            group=(obs.sport, f.get("sha256")),
            severity="medium" if clinical else "low",
            port=obs.sport,
        )
