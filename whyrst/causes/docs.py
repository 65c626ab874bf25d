"""Cause pages in the manner of ruff's rule pages: what it is, why it happens, what it looks like on
the wire, how to confirm it on the host, and how to fix it. ``whyrst explain ID`` prints one;
``python -m whyrst.causes.docs DIR`` writes them all (docs/causes/)."""

from __future__ import annotations

import sys
from pathlib import Path

from whyrst.causes.catalog import CAUSES, DISTINGUISH, Cause


def cause_page(c: Cause) -> str:
    lines = [f"# {c.id}: {c.title}", "", "## What it is", "", c.summary, "", "## Why it happens", "", c.why, "",
             "## Wire signature", "", c.signature, ""]
    if c.example:
        lines += ["## Example", "", "```", c.example, "```", ""]
    lines += ["## Who sends the RST", "", {
        "endpoint": "The endpoint's own TCP stack.",
        "firewall": "A packet filter (netfilter REJECT) on the host or on the path, in the endpoint's name.",
        "middlebox": "A box on the path (NAT, load balancer, proxy), or the endpoint after the box changed "
                     "what it sees.",
        "injector": "A third party forging the endpoint's address.",
        "unknown": "Not known.",
    }[c.sender], ""]
    lines += ["## How to confirm it on the host", ""] + [f"- `{x}`" if x.startswith(("ss ", "nstat", "sysctl",
                                                                                   "iptables", "conntrack"))
                                                        else f"- {x}" for x in c.confirm] + [""]
    others = [(next(iter(pair - {c.id})), text) for pair, text in DISTINGUISH.items() if c.id in pair]
    if others:
        lines += ["## Telling it apart", ""] + [f"- from `{o}`: {t}" for o, t in sorted(others)] + [""]
    lines += ["## Fix", ""] + [f"- {x}" for x in c.fix] + [""]
    lines += ["## Linux kernel reasons", "",
              "The `reason` of the `tcp:tcp_send_reset` tracepoint (Linux 6.10+) seen for this cause: "
              + (", ".join(f"`{r}`" for r in c.kernel_reasons) if c.kernel_reasons
                 else "none: this RST is not sent by the TCP stack, so the tracepoint does not fire.")]
    return "\n".join(lines) + "\n"


def write_pages(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    index = ["# The whyrst cause catalog", "", "| id | title |", "|---|---|"]
    for c in CAUSES:
        path = directory / f"{c.id}.md"
        path.write_text(cause_page(c), encoding="utf-8")
        written.append(path)
        index.append(f"| [{c.id}]({c.id}.md) | {c.title} |")
    (directory / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return written


if __name__ == "__main__":
    write_pages(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/causes"))
