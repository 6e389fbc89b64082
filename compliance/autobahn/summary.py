"""Verdicts of an Autobahn|Testsuite run, from the ``index.json`` wstest writes.

``python -m compliance.autobahn.summary OUTDIR [--accept STATUSES] [--json FILE]`` prints,
per agent, how many cases got each verdict (``behavior``, and ``behaviorClose`` for the
closing handshake), the same per case group, and the ids of every case that is not OK.
A case passes when both verdicts are among the accepted statuses (default OK and
INFORMATIONAL: NON-STRICT, WRONG CODE, UNCLEAN, FAILED, UNIMPLEMENTED... all fail).
Exit status: 0 every case passed; 1 some case did not, or there are no results; 2 the
report cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ACCEPT = frozenset({"OK", "INFORMATIONAL"})
GROUPS = {
    "1": "framing",
    "2": "pings and pongs",
    "3": "reserved bits",
    "4": "opcodes",
    "5": "fragmentation",
    "6": "UTF-8",
    "7": "close handling",
    "9": "limits and performance",
    "10": "auto-fragmentation",
    "12": "compression, payloads",
    "13": "compression, parameters",
}

Case = dict[str, Any]


def case_key(case_id: str) -> list[tuple[int, int | str]]:
    """Sort key: 9.10.1 after 9.2.1."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in case_id.split(".")]


def load(outdir: Path) -> dict[str, dict[str, Case]]:
    """``{agent: {case id: case}}`` from ``OUTDIR/index.json``; OSError/ValueError if unreadable."""
    index = outdir / "index.json" if outdir.is_dir() else outdir
    data = json.loads(index.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{index}: not a JSON object of agents")
    return data


@dataclass
class AgentSummary:
    agent: str
    cases: dict[str, Case]
    accept: frozenset[str] = DEFAULT_ACCEPT
    behavior: Counter[str] = field(init=False)
    behavior_close: Counter[str] = field(init=False)
    failing: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.behavior = Counter(str(c.get("behavior")) for c in self.cases.values())
        self.behavior_close = Counter(str(c.get("behaviorClose")) for c in self.cases.values())
        self.failing = [
            case_id for case_id in sorted(self.cases, key=case_key)
            if self.cases[case_id].get("behavior") not in self.accept
            or self.cases[case_id].get("behaviorClose") not in self.accept
        ]

    def groups(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for case_id in sorted(self.cases, key=case_key):
            out.setdefault(case_id.split(".")[0], Counter())[str(self.cases[case_id].get("behavior"))] += 1
        return out

    def failing_lines(self) -> list[str]:
        return [
            f"  {case_id:<10} behavior={self.cases[case_id].get('behavior')!s:<14} "
            f"behaviorClose={self.cases[case_id].get('behaviorClose')!s:<14} "
            f"remoteCloseCode={self.cases[case_id].get('remoteCloseCode')}"
            for case_id in self.failing
        ]

    def text(self) -> str:
        statuses = sorted(set(self.behavior) | set(self.behavior_close), key=lambda s: (s != "OK", s))
        seconds = sum(c.get("duration") or 0 for c in self.cases.values()) / 1000
        lines = [f"agent {self.agent}: {len(self.cases)} cases, {seconds:.1f} s in all"]
        lines.append(f"  {'verdict':<16}{'behavior':>9}{'close':>9}")
        lines += [f"  {s:<16}{self.behavior[s]:>9}{self.behavior_close[s]:>9}" for s in statuses]
        lines.append("  per group (behavior):")
        for group, counts in self.groups().items():
            title = f"{group}.x {GROUPS.get(group, '')}"
            lines.append(f"    {title:<30}{sum(counts.values()):>5}  "
                         + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
        others = {
            s: [i for i in sorted(self.cases, key=case_key)
                if s in (self.cases[i].get("behavior"), self.cases[i].get("behaviorClose"))]
            for s in statuses if s != "OK"
        }
        lines += [f"  {s} ({len(ids)}): {', '.join(ids)}" for s, ids in others.items()]
        accepted = "/".join(sorted(self.accept))
        if self.failing:
            lines.append(f"  FAILING ({len(self.failing)}, a verdict other than {accepted}):")
            lines += self.failing_lines()
        else:
            lines.append(f"  passed: every verdict is {accepted}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "cases": len(self.cases),
            "behavior": dict(self.behavior),
            "behaviorClose": dict(self.behavior_close),
            "groups": {g: dict(c) for g, c in self.groups().items()},
            "failing": self.failing,
        }


def summarize(outdir: Path, accept: frozenset[str] = DEFAULT_ACCEPT) -> list[AgentSummary]:
    return [AgentSummary(agent, cases, accept) for agent, cases in sorted(load(outdir).items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("outdir", type=Path, help="wstest's report folder (or its index.json)")
    parser.add_argument("--accept", default=",".join(sorted(DEFAULT_ACCEPT)),
                        help="comma-separated verdicts that pass (default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the summary as JSON")
    args = parser.parse_args(argv)
    accept = frozenset(s.strip() for s in args.accept.split(",") if s.strip())
    try:
        agents = summarize(args.outdir, accept)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the report in {args.outdir}: {exc}", file=sys.stderr)
        return 2
    for agent in agents:
        print(agent.text())
    total = sum(len(a.cases) for a in agents)
    failing = sum(len(a.failing) for a in agents)
    passed = total > 0 and failing == 0
    print(f"result: {total} cases, {failing} failing" + ("" if total else " (no results)"))
    if args.json:
        blob = {"agents": [a.as_json() for a in agents], "accept": sorted(accept), "passed": passed}
        args.json.write_text(json.dumps(blob, indent=2) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
