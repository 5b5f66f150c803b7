"""Rebuild examples/collection from the public-domain rows of the shared dev set.

Only rows whose license starts with "public domain" are used; each image is downscaled to at
most 384 px on its longer side. Titles and artists come from the works' own file names in the
source URLs (left blank where the name does not say). Run from the repository root:

    python examples/build_collection.py ../shared/data/art-dev
"""

from __future__ import annotations

import csv
import sys
import urllib.parse
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent / "collection"
MAX_SIDE = 384
LANDSCAPES = 30

# Genre scenes: (artist, title, date) as their Wikimedia file names give them.
GENRE = {
    "genre_033.jpg": ("Joos van Craesbeeck", "Soldiers and Women", ""),
    "genre_043.jpg": ("", "The Idle Servant", ""),
    "genre_068.jpg": ("John Lewis Krimmel", "Country Wedding", "1820"),
    "genre_071.jpg": ("Wybrand Hendriks", "Interior with a Woman Sewing", ""),
    "genre_082.jpg": ("", "The Wood Sawyer", ""),
    "genre_087.jpg": ("Jan Sanders van Hemessen", "", ""),
    "genre_093.jpg": ("Henryk Siemiradzki", "Idyll", ""),
    "genre_103.jpg": ("Carl Spitzweg", "", ""),
    "genre_113.jpg": ("Johannes Vermeer", "Woman Writing a Letter, with her Maid", ""),
    "genre_117.jpg": ("Gillis van Tilborgh", "Elegant Company", ""),
    "genre_145.jpg": ("David Teniers the Younger", "Tavern Scene", ""),
    "genre_151.jpg": ("Pieter Bruegel the Elder", "", ""),
    "genre_156.jpg": ("Jean-Siméon Chardin", "", ""),
    "genre_185.jpg": ("Annibale Carracci", "An Allegory of Truth and Time", "1584-85"),
    "genre_195.jpg": ("Adriaen van Ostade", "Peasant Dance in a Barn", "1635"),
    "genre_197.jpg": ("Peter Paul Rubens", "", ""),
    "genre_198.jpg": ("Adriaen van Ostade", "Peasant Dance by a Tavern", ""),
    "genre_201.jpg": ("Florent Crabeels", "Peasant Dance", ""),
}


def slug_title(url: str) -> str:
    """'the-grand-canal-venice' -> 'The grand canal venice'; museum numbers give ''."""
    name = urllib.parse.unquote(url.rstrip("/").rsplit("/", 1)[-1])
    if not any(c.isalpha() for c in name) or "-" not in name or name != name.lower():
        return ""
    return name.replace("-", " ").capitalize()


def main(dev: Path) -> None:
    rows = [r for r in csv.DictReader((dev / "metadata.csv").open())
            if r["license"].startswith("public domain")]
    chosen = [r for r in rows if r["genre"] == "genre"]
    chosen += [r for r in rows if r["genre"] == "landscape" and slug_title(r["url"])][:LANDSCAPES]
    out_rows = []
    for r in chosen:
        name = Path(r["path"]).name
        rel = f"{r['genre']}/{name}"
        artist, title, date = GENRE.get(name, ("", slug_title(r["url"]), ""))
        img = Image.open(dev / r["path"]).convert("RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        (OUT / r["genre"]).mkdir(parents=True, exist_ok=True)
        img.save(OUT / rel, quality=88, optimize=True)
        out_rows.append({"path": rel, "title": title, "artist": artist, "date": date,
                         "genre": r["genre"], "license": r["license"], "source": r["url"]})
    with (OUT / "metadata.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(out_rows[0]))
        writer.writeheader()
        writer.writerows(out_rows)
    print(f"wrote {len(out_rows)} images to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/art-dev"))
