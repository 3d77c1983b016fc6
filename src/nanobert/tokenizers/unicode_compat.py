"""Where Hugging Face's BERT tokenizer and Python's `unicodedata` (Unicode 14.0 in Python 3.11) disagree.

Hugging Face's `tokenizers` decides "control", "punctuation" and "nonspacing mark" with tables
from an older Unicode version, and lowercases with a newer one (Rust's standard library). Found by
comparing the two on every code point (tests/tokenizers/test_normalize.py repeats that comparison):

- it never drops unassigned code points (category Cn) when cleaning text, nor the format (Cf)
  characters below, assigned after its tables were made;
- the characters below are punctuation for one side only (newer punctuation, plus two characters
  whose category changed since);
- the marks below are nonspacing (stripped with accents) for one side only, and one character
  is not decomposed by its NFD;
- it lowercases the capital letters below, which Unicode 14.0 does not know yet.

Each table lists what Hugging Face does for those code points; everything else follows `unicodedata`.
"""

from __future__ import annotations

CHECKED_AGAINST = "14.0.0"  # the unicodedata version these tables were measured with (Python 3.11)


def _expand(ranges) -> frozenset[int]:
    """Example: `_expand([(1, 3), 7])` -> `frozenset({1, 2, 3, 7})`."""
    out = set()
    for r in ranges:
        a, b = r if isinstance(r, tuple) else (r, r)
        out.update(range(a, b + 1))
    return frozenset(out)


# Format characters (Cf in Unicode 14.0) that are kept, not dropped.
KEPT_FORMAT = _expand([(0x890, 0x891), 0x8E2, 0x110CD, (0x13430, 0x13438)])

# Punctuation for Hugging Face: these two are not P* in Unicode 14.0 but are for it ...
EXTRA_PUNCTUATION = _expand([0x166D, 0x111C9])
# ... and these are P* in Unicode 14.0 but not for it.
NOT_PUNCTUATION = _expand([
    0x61D, 0x9FD, 0xA76, 0xC77, 0xC84, (0x1B7D, 0x1B7E), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), 0x10EAD,
    (0x10F55, 0x10F59), (0x10F86, 0x10F89), 0x1144B, 0x1144C, 0x1144D, 0x1144E, 0x1144F, (0x1145A, 0x1145B),
    0x1145D, (0x11660, 0x1166C), 0x116B9, 0x1183B, (0x11944, 0x11946), 0x119E2, (0x11A3F, 0x11A46),
    (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8),
    0x11FFF, (0x12FF1, 0x12FF2), (0x16E97, 0x16E9A), 0x16FE2, (0x1E95E, 0x1E95F),
])

# Stripped as accents by Hugging Face although Unicode 14.0 calls them spacing marks (Mc) ...
EXTRA_NONSPACING = _expand([0x1734])
# ... and kept although Unicode 14.0 calls them nonspacing (Mn).
NOT_NONSPACING = _expand([
    0x7FD, (0x898, 0x89F), (0x8CA, 0x8E1), 0x9FE, (0xAFA, 0xAFF), 0xB55, 0xC04, 0xC3C, 0xD00, (0xD3B, 0xD3C),
    0xD81, 0xEBA, 0x180F, (0x1885, 0x1886), (0x1ABF, 0x1ACE), (0x1DF6, 0x1DFB), 0xA82C, 0xA8C5, 0xA8FF, 0xA9BD,
    (0x10D24, 0x10D27), (0x10EAB, 0x10EAC), (0x10F46, 0x10F50), (0x10F82, 0x10F85), 0x11070, (0x11073, 0x11074),
    0x110C2, 0x111C9, 0x111CF, 0x1123E, 0x1133B, (0x11438, 0x1143F), (0x11442, 0x11444), 0x11446, 0x1145E,
    (0x1182F, 0x11837), (0x11839, 0x1183A), (0x1193B, 0x1193C), 0x1193E, 0x11943, (0x119D4, 0x119D7),
    (0x119DA, 0x119DB), 0x119E0, (0x11A01, 0x11A0A), (0x11A33, 0x11A38), (0x11A3B, 0x11A3E), 0x11A47,
    (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A, 0x11A96), (0x11A98, 0x11A99), (0x11C30, 0x11C36),
    (0x11C38, 0x11C3D), 0x11C3F, (0x11C92, 0x11CA7), (0x11CAA, 0x11CB0), (0x11CB2, 0x11CB3), (0x11CB5, 0x11CB6),
    (0x11D31, 0x11D36), 0x11D3A, (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45), 0x11D47, (0x11D90, 0x11D91), 0x11D95,
    0x11D97, (0x11EF3, 0x11EF4), 0x16F4F, 0x16FE4, (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46), (0x1E000, 0x1E006),
    (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E130, 0x1E136), 0x1E2AE,
    (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A),
])

# Not decomposed by its NFD (a composition added in Unicode 13.0).
NOT_DECOMPOSED = _expand([0x11938])

# Lowercase of capitals newer than Unicode 14.0: (first, last, offset to the small letter) ...
_LOWER_RANGES = [(0x10D50, 0x10D65, 0x20), (0x16EA0, 0x16EB8, 0x1B)]
# ... and single letters.
_LOWER_SINGLE = {0x1C89: 0x1C8A, 0xA7CB: 0x264, 0xA7CC: 0xA7CD, 0xA7CE: 0xA7CF, 0xA7D2: 0xA7D3, 0xA7D4: 0xA7D5,
                 0xA7DA: 0xA7DB, 0xA7DC: 0x19B}
EXTRA_LOWER = {**_LOWER_SINGLE, **{cp: cp + d for a, b, d in _LOWER_RANGES for cp in range(a, b + 1)}}
