#!/usr/bin/env python3
"""Accuracy of learned fingerprints (medsentry.identify.learn) on the IoT Sentinel setup captures.

Experiments: (1) person split (train on the setups of one person, test on the other's), (2) leave one
setup out, (3) leave one setup out with the device's MAC changed in the test capture (OUI kept, NIC part
and every copy of it in payload fields rewritten, as a different unit of the type would show), (4) the
other unit of the types with two (EdimaxCam1/2, EdnetCam1/2): trained without it, and (5) leave one
type out: every capture of an untaught type should be answered "unknown".

Usage: scripts/eval_iot_sentinel.py [DATASET_DIR] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsentry.identify.learn import (
    DEFAULT_THRESHOLD,
    DeviceProfile,
    LearnedModel,
    learn_profiles,
    profile_observations,
)
from medsentry.observe import Observation
from medsentry.pipeline import observe_files

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/devices/iot-sentinel"
# Two units of one type: the paper counts 27 types for 31 devices.
MERGE = {
    "EdimaxCam1": "EdimaxCam",
    "EdimaxCam2": "EdimaxCam",
    "EdnetCam1": "EdnetCam",
    "EdnetCam2": "EdnetCam",
    "WeMoSwitch2": "WeMoSwitch",
    "WeMoInsightSwitch2": "WeMoInsightSwitch",
}
SWEEP = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
_NAME = re.compile(r"Setup-([A-Za-z]+)-(\d+)-STA\.pcap$")


@dataclasses.dataclass
class Capture:
    label: str
    folder: str
    person: str
    path: Path
    mac: str
    obs: list[Observation]

    def profile(self, mac_changed: bool = False) -> DeviceProfile:
        if not mac_changed:
            return profile_observations(self.obs, self.mac)
        new = changed_mac(self.mac)
        return profile_observations([rewrite_mac(o, self.mac, new) for o in self.obs], new)


def changed_mac(mac: str) -> str:
    """Same OUI, different NIC part."""
    nic = bytes(b ^ 0x5A for b in bytes.fromhex(mac.replace(":", "")[6:]))
    return mac[:9] + nic.hex(":")


def rewrite_mac(obs: Observation, old: str, new: str) -> Observation:
    """The observation as another unit of the type would produce it: addresses and every copy of the MAC
    (or its hex tail, as in hostnames like GainSpanca9152) inside payload fields."""
    o, n = old.replace(":", ""), new.replace(":", "")
    pairs = [(old, new), (old.replace(":", "-"), new.replace(":", "-"))]
    pairs += [(o[-k:], n[-k:]) for k in (12, 6, 4)]

    def sub(v: Any) -> Any:
        if isinstance(v, str):
            for a, b in pairs:
                v = v.replace(a, b).replace(a.upper(), b.upper())
            return v
        if isinstance(v, list):
            return [sub(x) for x in v]
        if isinstance(v, dict):
            return {k: sub(x) for k, x in v.items()}
        return v

    def mac(m: str | None) -> str | None:
        return new if m == old else m

    return dataclasses.replace(
        obs, src_mac=mac(obs.src_mac), dst_mac=mac(obs.dst_mac), fields=sub(obs.fields)
    )


def load(root: Path) -> list[Capture]:
    caps = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        mac = (folder / "_iotdevice-mac.txt").read_text().strip().lower()
        for path in sorted(folder.glob("*.pcap")):
            m = _NAME.search(path.name)
            if not m:
                continue
            obs, _ = observe_files([path])
            caps.append(Capture(MERGE.get(folder.name, folder.name), folder.name, m.group(1), path, mac, obs))
    return caps


@dataclasses.dataclass
class Result:
    name: str
    # (truth, answer, score, truth was taught, the tied types when the answer is "unknown" for a tie)
    rows: list[tuple[str, str | None, float, bool, tuple[str, ...]]]

    def at(self, threshold: float) -> Result:
        """The answers had the model used this threshold (rows hold the threshold-free answers)."""
        rows = [(t, a if s >= threshold else None, s, k, c) for t, a, s, k, c in self.rows]
        return Result(self.name, rows)

    def summary(self) -> dict[str, float]:
        known = [r for r in self.rows if r[3]]
        novel = [r for r in self.rows if not r[3]]
        return {
            "tests": len(self.rows),
            "known": len(known),
            "correct": sum(r[1] == r[0] for r in known),
            "accuracy": sum(r[1] == r[0] for r in known) / len(known) if known else float("nan"),
            "unknown_share": sum(r[1] is None for r in known) / len(known) if known else float("nan"),
            "wrong": sum(r[1] not in (None, r[0]) for r in known),
            "tied": sum(r[1] is None and r[0] in r[4] for r in known),
            "novel": len(novel),
            "novel_unknown": sum(r[1] is None for r in novel),
        }

    def confusion(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for truth, answer, _, _, tied in self.rows:
            out[truth][answer or ("tie " + "/".join(tied) if truth in tied else "unknown")] += 1
        return out


def run(
    name: str,
    caps: list[Capture],
    folds: list[tuple[list[Capture], list[Capture]]],
    mac_changed: bool = False,
) -> Result:
    """Threshold-free answers (apply one with Result.at)."""
    profiles = {id(c): c.profile() for c in caps}
    rows = []
    for train, test in folds:
        samples: dict[str, list[DeviceProfile]] = defaultdict(list)
        for c in train:
            samples[c.label].append(profiles[id(c)])
        model = LearnedModel.from_dict(learn_profiles(samples, threshold=0.0))
        for c in test:
            m = model.classify(c.profile(mac_changed) if mac_changed else profiles[id(c)])
            tied = m.candidates if m.label is None and len(m.candidates) > 1 else ()
            rows.append((c.label, m.label, m.score, c.label in samples, tied))
    return Result(name, rows)


def person_folds(caps: list[Capture]) -> list[tuple[list[Capture], list[Capture]]]:
    persons = sorted({c.person for c in caps})
    return [
        ([c for c in caps if c.person == a], [c for c in caps if c.person == b])
        for a in persons
        for b in persons
        if a != b
    ]


def loso_folds(caps: list[Capture]) -> list[tuple[list[Capture], list[Capture]]]:
    return [([c for c in caps if c is not t], [t]) for t in caps]


def unit_folds(caps: list[Capture]) -> list[tuple[list[Capture], list[Capture]]]:
    """Types with two units (folders): train without one unit, test on its captures."""
    folders: dict[str, set[str]] = defaultdict(set)
    for c in caps:
        folders[c.label].add(c.folder)
    held = sorted(f for fs in folders.values() if len(fs) > 1 for f in fs)
    return [([c for c in caps if c.folder != f], [c for c in caps if c.folder == f]) for f in held]


def loto_folds(caps: list[Capture]) -> list[tuple[list[Capture], list[Capture]]]:
    labels = sorted({c.label for c in caps})
    return [([c for c in caps if c.label != lab], [c for c in caps if c.label == lab]) for lab in labels]


def fmt(res: Result) -> list[str]:
    s = res.summary()
    lines = [f"### {res.name}", ""]
    if s["known"]:
        lines.append(
            f"- {s['correct']}/{s['known']} captures of taught types right: **{100 * s['accuracy']:.1f} %**; "
            f"unknown {100 * s['unknown_share']:.1f} %, wrong type {s['wrong']}"
        )
        if s["tied"]:
            both = s["correct"] + s["tied"]
            lines.append(
                f"- {s['tied']} of the unknowns are a tie between types that includes the right one; "
                f"counting those as right: {both}/{s['known']} ({100 * both / s['known']:.1f} %)"
            )
    if s["novel"]:
        lines.append(
            f"- {s['novel_unknown']}/{s['novel']} captures of untaught types answered unknown "
            f"({100 * s['novel_unknown'] / s['novel']:.1f} %)"
        )
    lines += ["", "| type | captures | right | answers |", "|---|---|---|---|"]
    quiet = []
    taught = {r[0] for r in res.rows if r[3]}
    for truth, answers in sorted(res.confusion().items()):
        n = sum(answers.values())
        if truth not in taught and answers["unknown"] == n:
            quiet.append(truth)  # never taught and always refused: no row of its own
            continue
        ans = ", ".join(f"{a} {k}" for a, k in answers.most_common())
        lines.append(f"| {truth} | {n} | {answers[truth]} | {ans} |")
    if quiet:
        lines.append(f"| {len(quiet)} other types, never taught | | | all unknown |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--markdown", type=Path, help="write the results as markdown here")
    ap.add_argument("--only", help="comma-separated experiments: person,loso,mac,unit,loto")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"no dataset at {args.root}", file=sys.stderr)
        return 2
    t0 = time.time()
    caps = load(args.root)
    print(f"{len(caps)} captures, {len({c.label for c in caps})} types, read in {time.time() - t0:.1f}s")
    experiments: dict[str, Callable[[], Result]] = {
        "person": lambda: run("Person split", caps, person_folds(caps)),
        "loso": lambda: run("Leave one setup out", caps, loso_folds(caps)),
        "mac": lambda: run("Leave one setup out, MAC changed", caps, loso_folds(caps), True),
        "unit": lambda: run("Other unit of the type (train without it)", caps, unit_folds(caps)),
        "loto": lambda: run("Leave one type out (open set)", caps, loto_folds(caps)),
    }
    chosen = args.only.split(",") if args.only else list(experiments)
    results = {key: experiments[key]() for key in chosen}
    out: list[str] = []
    for res in results.values():
        out += fmt(res.at(args.threshold))
    out += ["### Threshold sweep", "", "| threshold | " + " | ".join(r.name for r in results.values()) + " |"]
    out.append("|---" * (len(results) + 1) + "|")
    for t in SWEEP:
        cells = []
        for res in results.values():
            s = res.at(t).summary()
            cell = f"{100 * s['accuracy']:.1f} % right, {s['wrong']} wrong" if s["known"] else ""
            if s["novel"]:
                cell += f"{'; ' if cell else ''}{s['novel_unknown']}/{s['novel']} untaught unknown"
            cells.append(cell)
        out.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    out.append("")
    print("\n".join(out))
    if args.markdown:
        args.markdown.write_text("\n".join(out))
    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
