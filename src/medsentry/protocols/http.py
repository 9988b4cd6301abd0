"""HTTP/1.x (RFC 9112): request and response heads; bodies are skipped, never buffered.

Wire format:

    request   method SP request-target SP HTTP-version CRLF *(field-line CRLF) CRLF [body]
    response  HTTP-version SP status-code SP [reason-phrase] CRLF *(field-line CRLF) CRLF [body]
    field     field-name ":" OWS field-value OWS
    body      "Transfer-Encoding: chunked":
                  *(chunk-size(hex)[;ext] CRLF data CRLF) "0" CRLF *(trailer CRLF) CRLF
              else Content-Length bytes. Responses to HEAD, 1xx, 204 and 304 have none; a response with
              neither header lasts until the connection closes; after 101 or a 2xx to CONNECT the
              connection carries another protocol.

Bare LF line endings are accepted (RFC 9112 section 2.2). `HeadReader` is shared with RTSP, which uses the
same message syntax.

Privacy: the query string is dropped (FHIR searches carry patient names, birth dates, identifiers): only
its parameter names are kept. A FHIR logical id in the path becomes "{id}" plus `fhir_id_hash`. Of an
Authorization header only the scheme is kept, and for Basic a salted hash of the user name.
"""

from __future__ import annotations

import binascii
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from medsentry.privacy import phi_hash
from medsentry.protocols import ntlmssp
from medsentry.protocols.base import Malformed, Message

NAME: Final = "http"
# 631 is IPP (HTTP POST of application/ipp), 5000/9000 embedded web servers, 8008-8888 the alternates.
TCP_PORTS: Final = frozenset({80, 591, 631, 5000, 7080, 8000, 8008, 8080, 8081, 8088, 8888, 9000, 9080})

_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH", b"PROPFIND",
     b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT", b"SEARCH"}
)
CHUNKED: Final = -1  # body_length() results besides a byte count
UNTIL_CLOSE: Final = -2
_MAX_LINE: Final = 8192
_MAX_HEAD: Final = 64 * 1024
_MAX_FIELDS: Final = 256
_MAX_QUERY_KEYS: Final = 32
_MAX_PIPELINED: Final = 64

# FHIR R4 resource types (hl7.org/fhir/R4/resourcelist.html)
FHIR_RESOURCES: Final = frozenset(
    {
        "Account", "ActivityDefinition", "AdverseEvent", "AllergyIntolerance", "Appointment",
        "AppointmentResponse", "AuditEvent", "Basic", "Binary", "BiologicallyDerivedProduct",
        "BodyStructure", "Bundle", "CapabilityStatement", "CarePlan", "CareTeam", "CatalogEntry",
        "ChargeItem", "ChargeItemDefinition", "Claim", "ClaimResponse", "ClinicalImpression", "CodeSystem",
        "Communication", "CommunicationRequest", "CompartmentDefinition", "Composition", "ConceptMap",
        "Condition", "Consent", "Contract", "Coverage", "CoverageEligibilityRequest",
        "CoverageEligibilityResponse", "DetectedIssue", "Device", "DeviceDefinition", "DeviceMetric",
        "DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference",
        "EffectEvidenceSynthesis", "Encounter", "Endpoint", "EnrollmentRequest", "EnrollmentResponse",
        "EpisodeOfCare", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario",
        "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal", "GraphDefinition", "Group",
        "GuidanceResponse", "HealthcareService", "ImagingStudy", "Immunization", "ImmunizationEvaluation",
        "ImmunizationRecommendation", "ImplementationGuide", "InsurancePlan", "Invoice", "Library",
        "Linkage", "List", "Location", "Measure", "MeasureReport", "Media", "Medication",
        "MedicationAdministration", "MedicationDispense", "MedicationKnowledge", "MedicationRequest",
        "MedicationStatement", "MedicinalProduct", "MedicinalProductAuthorization",
        "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
        "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "MessageDefinition",
        "MessageHeader", "MolecularSequence", "NamingSystem", "NutritionOrder", "Observation",
        "ObservationDefinition", "OperationDefinition", "OperationOutcome", "Organization",
        "OrganizationAffiliation", "Parameters", "Patient", "PaymentNotice", "PaymentReconciliation",
        "Person", "PlanDefinition", "Practitioner", "PractitionerRole", "Procedure", "Provenance",
        "Questionnaire", "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchDefinition",
        "ResearchElementDefinition", "ResearchStudy", "ResearchSubject", "RiskAssessment",
        "RiskEvidenceSynthesis", "Schedule", "SearchParameter", "ServiceRequest", "Slot", "Specimen",
        "SpecimenDefinition", "StructureDefinition", "StructureMap", "Subscription", "Substance",
        "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
        "SubstanceSourceMaterial", "SubstanceSpecification", "SupplyDelivery", "SupplyRequest", "Task",
        "TerminologyCapabilities", "TestReport", "TestScript", "ValueSet", "VerificationResult",
        "VisionPrescription",
    }
)


# a request line at least this long may not end in its first segment (long query strings)
_LONG_LINE: Final = 512


def looks_like(head: bytes) -> bool:
    """A request line: a known method, a space, and "HTTP/1." on the first line; or, where the first segment
    ends inside a long request line, a known method and an absolute path (RTSP's targets are URLs)."""
    method, _, rest = head.partition(b" ")
    if method not in _METHODS:
        return False
    line, newline, _ = rest.partition(b"\n")
    if newline:
        return b" HTTP/1." in line
    return rest.startswith(b"/") and len(head) >= _LONG_LINE


def mid_stream(head: bytes) -> bool:
    """A connection picked up after a request (kept alive, or long-polling): a status line first. The
    parser reads it as a response (`StreamParser` tells heads apart by their start line)."""
    return head[:9] in (b"HTTP/1.0 ", b"HTTP/1.1 ") and head[9:12].isdigit()


class Head:
    """A message head. A plain class: a NamedTuple's constructor is generated Python, interpreted under
    mypyc for every head."""

    __slots__ = ("headers", "is_response", "start")

    def __init__(self, start: tuple[str, str, str], headers: dict[str, str], is_response: bool) -> None:
        self.start = start  # request: method, target, version; response: version, status, reason
        self.headers = headers  # lower-case field name -> first value
        self.is_response = is_response


class HeadReader:
    """One direction of an HTTP/1-style stream: yields message heads, skips bodies.

    `body_length(head)` tells how much body follows each head: a byte count, CHUNKED or UNTIL_CLOSE.
    `interleaved` skips RTSP's "$" channel frames between messages (RFC 2326 section 10.12).
    """

    __slots__ = ("_body_length", "_interleaved", "_line", "_lines", "_size", "_skip", "_state", "_version")

    # states (one per line: mypyc compiles a class body of plain assignments only)
    _HEAD = 0
    _CHUNK_SIZE = 1
    _CHUNK_END = 2
    _TRAILER = 3
    _FRAME = 4
    _CLOSED = 5

    def __init__(self, version: bytes, body_length: Callable[[Head], int], interleaved: bool = False) -> None:
        self._version = version  # b"HTTP/" or b"RTSP/"
        self._body_length = body_length
        self._interleaved = interleaved
        self._state = self._HEAD
        self._skip = 0  # body bytes still to pass over
        self._line = bytearray()  # a line split across segments
        self._lines: list[bytes] = []  # the head read so far
        self._size = 0

    def feed(self, data: bytes) -> list[Head]:
        heads: list[Head] = []
        try:
            self._feed(data, heads)
        except Malformed:
            self._state = self._CLOSED  # no resynchronising inside a byte stream
            if not heads:
                raise
        return heads

    def _feed(self, data: bytes, heads: list[Head]) -> None:
        pos, end = 0, len(data)
        while pos < end and self._state != self._CLOSED:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            if self._state == self._HEAD and self._interleaved and not self._lines and not self._line \
                    and data[pos] == 0x24:  # "$" channel length(u16) payload
                self._state = self._FRAME
            if self._state == self._FRAME:
                take = min(4 - len(self._line), end - pos)
                self._line += data[pos : pos + take]
                pos += take
                if len(self._line) == 4:
                    self._skip = int.from_bytes(self._line[2:4], "big")
                    self._line.clear()
                    self._state = self._HEAD
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line += data[pos:]
                if len(self._line) > _MAX_LINE:
                    raise Malformed("line too long")
                return
            line = (bytes(self._line) + data[pos:nl]) if self._line else data[pos:nl]
            self._line.clear()
            pos = nl + 1
            self._on_line(line.rstrip(b"\r"), heads)

    def _on_line(self, line: bytes, heads: list[Head]) -> None:
        state = self._state
        if state == self._HEAD:
            if line:
                self._size += len(line)
                if len(line) > _MAX_LINE or self._size > _MAX_HEAD or len(self._lines) >= _MAX_FIELDS:
                    raise Malformed("head too large")
                self._lines.append(line)
            elif self._lines:  # the empty line ending a head; empty lines before one are allowed
                head = self._head(self._lines)
                self._lines, self._size = [], 0
                length = self._body_length(head)  # may reject the head: only then is it kept
                heads.append(head)
                if length == CHUNKED:
                    self._state = self._CHUNK_SIZE
                elif length == UNTIL_CLOSE:
                    self._state = self._CLOSED
                else:
                    self._skip = length
        elif state == self._CHUNK_SIZE:
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Malformed("bad chunk size") from None
            if size < 0:
                raise Malformed("bad chunk size")
            self._state, self._skip = (self._CHUNK_END, size) if size else (self._TRAILER, 0)
        elif state == self._CHUNK_END:  # the CRLF after a chunk's data
            self._state = self._CHUNK_SIZE
        elif not line:  # the empty line after the trailers
            self._state = self._HEAD

    def _head(self, lines: list[bytes]) -> Head:
        first = lines[0]
        if first.startswith(self._version):  # status line
            version, _, rest = first.partition(b" ")
            status, _, reason = rest.lstrip().partition(b" ")
            if not (len(status) == 3 and status.isdigit()):
                raise Malformed("bad status code")
            start = (version.decode("latin-1"), status.decode(), reason.decode("utf-8", "replace"))
        else:  # request line; tolerant of repeated or unencoded spaces in the target, as servers are
            method, _, rest = first.partition(b" ")
            target, _, version = rest.strip().rpartition(b" ")
            if not (method and target and version.startswith(self._version)):
                raise Malformed("not a request or status line")
            start = (method.decode("latin-1"), target.strip().decode("latin-1"), version.decode("latin-1"))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon and name and name[:1] not in b" \t":  # skips obsolete line folding
                headers.setdefault(name.strip().lower().decode("latin-1"),
                                   value.strip().decode("utf-8", "replace"))
        return Head(start, headers, first.startswith(self._version))


def message_body_length(headers: dict[str, str], default: int) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return CHUNKED
    length = headers.get("content-length")
    if length is None:
        return default
    if not length.isdigit():
        raise Malformed("bad Content-Length")
    return int(length)


def split_target(target: str) -> tuple[str, str, list[str]]:
    """(host, path, query parameter names) of a request target; the user info and query values never
    survive, even when a client failed to percent-encode them."""
    host = ""
    if "://" in target:  # absolute-form: scheme://[user[:password]@]host[:port]/path[?query]
        rest, question, query = target.split("://", 1)[1].partition("?")
        authority_path = rest.rpartition("@")[2]
        slash = authority_path.find("/")
        host, path = (authority_path[:slash], authority_path[slash:]) if slash >= 0 else (authority_path, "/")
        target = path + question + query
    path, _, query = target.partition("?")
    keys = [k for k, eq, _ in (p.partition("=") for p in query.split("&")) if eq and k]
    return host, path.partition("#")[0], list(dict.fromkeys(keys))[:_MAX_QUERY_KEYS]


def fhir_path(path: str) -> tuple[str, str | None, str | None]:
    """(path with the FHIR logical id replaced by "{id}", resource type, id) for a FHIR REST path."""
    segments = path.split("/")
    for i, segment in enumerate(segments):
        if segment in FHIR_RESOURCES:
            rest = segments[i + 1 :]
            if rest and rest[0] and rest[0][0] not in "_$":  # [type]/[id], not _search, _history, $op
                logical_id = rest[0]
                segments[i + 1] = "{id}"
                return "/".join(segments), segment, logical_id
            return path, segment, None
    return path, None, None


def ntlm_fields(value: str) -> dict[str, Any]:
    """What an NTLM (or Negotiate-wrapped NTLM) token in an Authorization / WWW-Authenticate header says of
    its sender (`ntlmssp.find`); nothing if it is no such token."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() not in ("ntlm", "negotiate") or not token:
        return {}
    try:
        blob = binascii.a2b_base64(token.strip().split(",")[0])
    except binascii.Error:
        return {}
    return ntlmssp.find(blob) or {}


def authorization_fields(value: str) -> dict[str, Any]:
    """The scheme of an Authorization header; for Basic, a salted hash of the user name; for NTLM, what its
    AUTHENTICATE message says of the client (workstation, domain, OS build; the user name hashed)."""
    scheme, _, credentials = value.strip().partition(" ")
    fields: dict[str, Any] = {"has_authorization": True, "auth_scheme": scheme, "basic_auth_present": False}
    fields.update(ntlm_fields(value))
    if scheme.lower() == "basic":
        fields["basic_auth_present"] = True
        try:
            user = binascii.a2b_base64(credentials.strip()).partition(b":")[0]
        except (binascii.Error, ValueError):
            return fields
        fields["basic_auth_user_hash"] = phi_hash(user)
    return fields


def request_fields(head: Head) -> dict[str, Any]:
    method, target, version = head.start
    h = head.headers
    _, path, query_keys = split_target(target)
    path, resource, logical_id = fhir_path(path)
    fields: dict[str, Any] = {"method": method, "path": path, "version": version}
    for name, key in (("host", "host"), ("user-agent", "user_agent"), ("content-type", "content_type")):
        if name in h:
            fields[key] = h[name]
    if query_keys:
        fields["query_keys"] = query_keys
    if resource:
        fields["fhir_resource"] = resource
    if logical_id:
        fields["fhir_id_hash"] = phi_hash(logical_id)
    fields["fhir"] = resource is not None or "fhir" in h.get("accept", "") + h.get("content-type", "")
    if "authorization" in h:
        fields.update(authorization_fields(h["authorization"]))
    else:
        fields.update(has_authorization=False, basic_auth_present=False)
    return fields


def response_fields(head: Head) -> dict[str, Any]:
    version, status, reason = head.start
    h = head.headers
    fields: dict[str, Any] = {"status": int(status), "reason": reason, "version": version}
    for name in ("server", "content-type", "www-authenticate", "x-powered-by"):
        if name in h:
            fields[name.replace("-", "_")] = h[name]
    fields["fhir"] = "fhir" in h.get("content-type", "")
    if "www-authenticate" in h:
        fields.update(ntlm_fields(h["www-authenticate"]))  # an NTLM CHALLENGE names the server
    return fields


class StreamParser:
    """One HTTP/1.x connection, requests possibly pipelined.

    Heads are told apart by their start line, not by direction, so a capture that begins mid-connection
    (the first payload seen being a response) still yields requests from the side that sent them.
    """

    __slots__ = ("_client", "_server")

    def __init__(self) -> None:
        exchange = _Exchange()
        self._client = HeadReader(b"HTTP/", exchange.body_length)
        self._server = HeadReader(b"HTTP/", exchange.body_length)

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        heads = (self._client if from_client else self._server).feed(data)
        return [Message("http.response", response_fields(h), from_client) if h.is_response
                else Message("http.request", request_fields(h), from_client) for h in heads]


class _Exchange:
    """A connection's requests still awaiting a response, which tell how long each response's body is.
    Its own object: readers given a method of their parser would hold the parser that holds them, a cycle
    that only the cyclic collector frees (two of them, a reader's list and the method, per connection)."""

    __slots__ = ("methods",)

    def __init__(self) -> None:
        self.methods: deque[str] = deque(maxlen=_MAX_PIPELINED)

    def body_length(self, head: Head) -> int:
        if not head.is_response:
            self.methods.append(head.start[0])
            return message_body_length(head.headers, 0)
        status = head.start[1]
        if status.startswith("1") and status != "101":  # interim: the final response is still to come
            return 0
        method = self.methods.popleft() if self.methods else ""
        if status == "101" or (method == "CONNECT" and status.startswith("2")):
            return UNTIL_CLOSE  # another protocol from here on
        if method == "HEAD" or status in ("204", "304"):
            return 0
        return message_body_length(head.headers, UNTIL_CLOSE)
