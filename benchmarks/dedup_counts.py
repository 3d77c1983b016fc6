"""What each filter of `nanobert.data.dedup` removes from a corpus, per dedup mode.

    python benchmarks/dedup_counts.py ../shared/data/enwiki/enwiki_clean.txt.gz none exact near
"""

from __future__ import annotations

import json
import sys
import time

from nanobert.data.dedup import DedupConfig, DocumentFilter
from nanobert.data.sources import read_documents


def main() -> None:
    path, modes = sys.argv[1], sys.argv[2:] or ["none", "exact", "near"]
    for mode in modes:
        t0 = time.perf_counter()
        filt = DocumentFilter(DedupConfig(dedup=mode))
        words = sum(len(doc.split()) for doc in filt(read_documents([path])))
        report = filt.report()
        report.pop("settings")
        print(mode, json.dumps(report), "words kept", words, f"{time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
