"""Write the sample corpus in data/sample: one product's documents, in every supported type.

The files are committed; run this (with the dev extras installed) only to change them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.docgen import write_csv, write_docx, write_pdf

SAMPLE = Path(__file__).resolve().parent / "sample"

USER_GUIDE = """\
# Aurora E-Bike User Guide

## Getting started

Unfold the frame until the hinge clicks, then close the quick-release lever. Set the saddle
so that your knee is slightly bent at the lowest pedal position. Before the first ride,
charge the battery fully: a new battery ships at about 40 percent.

## Charging the battery

Use only the 42 V charger supplied with the bike. A full charge from empty takes about
4.5 hours; 80 percent takes about 2.5 hours. Charge between 10 °C and 30 °C. The charger
light turns green when charging is complete.

The battery can stay on the bike while charging, or be removed with the key and charged
indoors. For storage longer than a month, keep the battery at 50 to 70 percent and check it
every eight weeks.

## Riding modes

The Aurora has three assist levels, chosen with the + and − buttons on the handlebar:

- **Eco** gives 50 percent assist and the longest range, up to 110 km.
- **Tour** gives 120 percent assist, for a range of about 75 km.
- **Boost** gives 250 percent assist for hills, for a range of about 45 km.

Assist stops at 25 km/h, as the law requires in the EU.

## Maintenance

Keep the chain clean and lubricated every 300 km. Check tyre pressure weekly: 3.5 to 4.5 bar
for the standard 27.5 × 2.2 inch tyres. Never clean the bike with a pressure washer: water
forced into the motor bearings voids the warranty.
"""

RELEASE_NOTES = """\
Aurora firmware release notes
=============================

Version 2.4.0
-------------

Released in March. Adds a walk-assist mode: hold the − button for two seconds to push the
bike at up to 6 km/h. Improves the battery gauge near empty, which could drop from 12 to
0 percent at once.

Version 2.3.1
-------------

Fixes a fault where the display stayed dark after waking from standby in cold weather.
Updating takes about five minutes through the Aurora app; keep the battery above
30 percent while it runs.
"""

FAQ = """\
<!doctype html>
<html lang="en">
<head><title>Aurora FAQ</title><style>body { font-family: sans-serif }</style>
<script>console.log("analytics")</script></head>
<body>
<h1>Aurora frequently asked questions</h1>
<h2>Can I ride in the rain?</h2>
<p>Yes. The motor, battery and display are rated IP65: rain and splashes are fine, but do
not submerge the bike or ride through water deeper than the bottom bracket.</p>
<h2>How heavy is the Aurora?</h2>
<p>The bike weighs 21.8 kg with the battery, and 18.9 kg without it. The maximum total
load, rider and luggage included, is 130 kg.</p>
<h2>What if I lose the battery key?</h2>
<p>Every key has a number stamped on it. Note it down: a dealer can order a replacement
key by that number within a week.</p>
</body>
</html>
"""


def main() -> None:
    """Write every sample file."""
    SAMPLE.mkdir(parents=True, exist_ok=True)
    (SAMPLE / "user-guide.md").write_text(USER_GUIDE, encoding="utf-8")
    (SAMPLE / "release-notes.txt").write_text(RELEASE_NOTES, encoding="utf-8")
    (SAMPLE / "faq.html").write_text(FAQ, encoding="utf-8")
    write_pdf(
        SAMPLE / "warranty.pdf",
        [
            [
                "Aurora limited warranty",
                "The frame is covered for 5 years against defects in materials and "
                "workmanship. The motor, battery and display are covered for 2 years, or "
                "for 800 full charge cycles of the battery, whichever comes first.",
                "The warranty applies to the first owner and needs the proof of purchase.",
            ],
            [
                "What the warranty does not cover",
                "Wear parts such as tyres, brake pads, chain and cassette; damage from "
                "accidents, misuse, racing or a pressure washer; and bikes modified to "
                "assist above 25 km/h.",
                "To make a claim, contact the dealer who sold the bike with the frame "
                "number, which is engraved under the bottom bracket.",
            ],
        ],
        title="Aurora limited warranty",
    )
    write_docx(
        SAMPLE / "service-handbook.docx",
        [
            ("h1", "Aurora service handbook"),
            ("p", "This handbook is for dealers and owners who service their own bike."),
            ("h2", "Service intervals"),
            ("p", "Follow these intervals, whichever comes first:"),
            (
                "table",
                "Item|Interval;Brake pads check|every 500 km;Full service|every 2,000 km "
                "or yearly;Battery health test|yearly",
            ),
            ("h2", "Brake bleeding"),
            (
                "p",
                "The hydraulic disc brakes use mineral oil, never DOT fluid. Bleed them "
                "every two years or when the lever feels soft.",
            ),
        ],
    )
    write_csv(
        SAMPLE / "spare-parts.csv",
        ["part", "sku", "price_eur", "fits"],
        [
            ["Battery 504 Wh", "AUR-BAT-504", "549", "all Aurora models"],
            ["Charger 42 V 4 A", "AUR-CHG-4A", "89", "all Aurora models"],
            ["Brake pads (pair)", "AUR-BRK-PAD", "19", "Aurora 2023 and later"],
            ["Battery key", "AUR-KEY", "15", "order by key number"],
        ],
    )


if __name__ == "__main__":
    main()
