"""The matching engine: pure functions from parsed vulnerability data and a subject to evidenced matches.

* `versions`: one total order for NVD/vendor version strings; `vers:` ranges (univers for ecosystems);
* `ranges`: free-text advisory version conditions ("< 8.2.2", "2.3.6 and below", "vers:all/*", lists);
* `cpe`: CPE 2.3 names and full NVD configuration evaluation (AND/OR, negate, platform CPEs);
* `affected`: CNA `affected[]` statements (CVE 5, NVD 2.0 `affected`);
* `csaf`: CSAF 2.0 product trees and product status against a device's vendor/model/version;
* `purl`: package URLs against `vers:` ranges;
* `vendors`: vendor aliasing (`data/vendor_aliases.yaml` + `data/vendors.yaml`).
No module here touches a store or the network.
"""

from medsentry.vulns.match.affected import AffectedMatch, match_affected
from medsentry.vulns.match.cpe import Cpe, CpeError, MatchEvidence, evaluate, evaluate_cve
from medsentry.vulns.match.csaf import Advisory, CsafError, CsafMatch, match_device
from medsentry.vulns.match.ranges import RangeSpec, parse_range_text
from medsentry.vulns.match.versions import InvalidVersion, Version, VersionRange, parse_vers

__all__ = [
    "Advisory",
    "AffectedMatch",
    "Cpe",
    "CpeError",
    "CsafError",
    "CsafMatch",
    "InvalidVersion",
    "MatchEvidence",
    "RangeSpec",
    "Version",
    "VersionRange",
    "evaluate",
    "evaluate_cve",
    "match_affected",
    "match_device",
    "parse_range_text",
    "parse_vers",
]
