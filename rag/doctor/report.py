"""What ``rag doctor`` found: checks by section, each ok, info, a warning or a failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "info", "warn", "fail"]
SECTIONS = ("versions", "llama.cpp", "embedding", "workload", "store", "settings")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    section: str
    name: str
    value: str
    status: Status = "info"


@dataclass
class Report:
    """Every check, in section order; ``ok`` unless one failed."""

    checks: list[Check] = field(default_factory=list)

    def add(self, section: str, name: str, value: str, status: Status = "info") -> None:
        """Append a check."""
        self.checks.append(Check(section, name, value, status))

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return all(check.status != "fail" for check in self.checks)

    def problems(self) -> list[Check]:
        """The failed checks and the warnings, failures first."""
        order = {"fail": 0, "warn": 1}
        bad = [c for c in self.checks if c.status in order]
        return sorted(bad, key=lambda c: order[c.status])

    def text(self) -> str:
        """The report for a terminal: a block per section, a verdict at the end."""
        marks = {"ok": "ok  ", "info": "    ", "warn": "WARN", "fail": "FAIL"}
        lines: list[str] = []
        for section in SECTIONS:
            checks = [c for c in self.checks if c.section == section]
            if not checks:
                continue
            lines.append(f"{section}")
            lines += [f"  {marks[c.status]} {c.name}: {c.value}" for c in checks]
        failed = sum(c.status == "fail" for c in self.checks)
        warned = sum(c.status == "warn" for c in self.checks)
        verdict = "broken" if failed else "working"
        lines.append(f"{verdict}: {failed} failed, {warned} warnings")
        return "\n".join(lines)

    def summary(self) -> list[str]:
        """A few lines for the app's sidebar: the verdict, the build, the devices, problems."""
        failed = sum(c.status == "fail" for c in self.checks)
        warned = sum(c.status == "warn" for c in self.checks)
        lines = [f"{'broken' if failed else 'working'}: {failed} failed, {warned} warnings"]
        wanted = {("llama.cpp", "offload"), ("embedding", "device"), ("embedding", "precision")}
        lines += [f"{c.name}: {c.value}" for c in self.checks if (c.section, c.name) in wanted]
        lines += [f"{c.status.upper()} {c.name}: {c.value}" for c in self.problems()]
        return lines

    def to_json(self) -> dict[str, Any]:
        """The report as data."""
        return {
            "ok": self.ok,
            "checks": [
                {"section": c.section, "name": c.name, "value": c.value, "status": c.status}
                for c in self.checks
            ],
        }
