"""SST-2 rows from the shipped sample, written as TSV files."""

from __future__ import annotations

import gzip

from nanobert.resources import ASSETS

def sst2_rows(name: str, n: int) -> list[tuple[str, int]]:
    with gzip.open(ASSETS / "sst2" / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()[1:n + 1]
    return [(s, int(y)) for s, y in (line.rsplit("\t", 1) for line in lines)]


def write_tsv(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows), encoding="utf-8")
    return path
