"""Word frequencies: the code under test in the example pipeline."""
import re
from collections import Counter

WORD = re.compile(r"[a-z']+")


def words(text):
    return WORD.findall(text.lower())


def frequencies(text):
    return Counter(words(text))


def top(text, n):
    return sorted(frequencies(text).items(), key=lambda kv: (-kv[1], kv[0]))[:n]
