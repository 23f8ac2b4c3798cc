"""Cipher: a secret letter substitution over a closed vocabulary of Wonderland words.

The examples give ciphertext -> plaintext sentences. The solver reads the letter map off
the examples and decodes the query letter by letter. A query letter no example shows is
decided by the closed vocabulary: the partly decoded word must fit exactly one
:data:`VOCABULARY` word (unknown cipher letters take distinct plain letters not used yet).
Draws where some word fits none or several are rejected as :class:`Ambiguous`.
"""

from __future__ import annotations

import random
import string

from reasondistill.data.puzzles.common import (
    Ambiguous,
    Draft,
    PromptError,
    check_line,
    render_prompt,
    split_prompt,
)

NAME = "cipher"
LEVELS = (1, 2, 3)
STYLES = ("compact", "stepwise")
VARIANTS = ("",)
STORY = "secret encryption rules are used on text."
ASK = "decrypt the following text"

WORD_CLASSES = {
    "subject": "alice rabbit queen king hatter cat mouse turtle dragon knight wizard "
               "princess student teacher bird".split(),
    "verb": "reads writes draws sees finds follows chases watches explores imagines "
            "discovers creates studies dreams".split(),
    "adjective": "golden silver secret hidden ancient magical bright dark wise clever "
                 "strange curious colorful mysterious".split(),
    "object": "book key map door garden castle forest cave island ocean mountain library "
              "palace tower valley river treasure puzzle story message potion mirror".split(),
    "place": "near inside under above beyond through around".split(),
}
VOCABULARY = frozenset(["the", *(w for words in WORD_CLASSES.values() for w in words)])
SENTENCES = (
    ("subject", "verb", "object"),
    ("the", "subject", "verb", "object"),
    ("subject", "verb", "the", "adjective", "object"),
    ("adjective", "subject", "verb", "place", "the", "object"),
)
# level -> (number of examples, allowed counts of query letters no example shows)
LEVEL_SPECS = {1: (4, range(0, 1)), 2: (3, range(1, 3)), 3: (2, range(3, 6))}


def sentence(rng: random.Random, length_cap: int) -> str:
    template = rng.choice(SENTENCES[:length_cap])
    return " ".join(w if w == "the" else rng.choice(WORD_CLASSES[w]) for w in template)


def encrypt(text: str, key: dict[str, str]) -> str:
    return "".join(key.get(ch, ch) for ch in text)


def draw(rng: random.Random, level: int, variant: str = "") -> Draft:
    count, unseen_allowed = LEVEL_SPECS[level]
    plain_letters = list(string.ascii_lowercase)
    shuffled = plain_letters[:]
    rng.shuffle(shuffled)
    key = dict(zip(plain_letters, shuffled))
    while True:
        examples = [sentence(rng, len(SENTENCES)) for _ in range(count)]
        query = sentence(rng, 2 + level)
        unseen = set(query.replace(" ", "")) - set("".join(examples))
        if len(unseen) in unseen_allowed and query not in examples:
            break
    lines = [f"{encrypt(text, key)} -> {text}" for text in examples]
    prompt = render_prompt(rng, STORY, lines, ASK, encrypt(query, key))
    return Draft(prompt, query, "substitution " + "".join(shuffled))


def parse(prompt: str) -> tuple[dict[str, str], list[str]]:
    """The cipher -> plain letter map the examples show, and the query's cipher words."""
    parts = split_prompt(prompt)
    letter_map: dict[str, str] = {}
    for line in parts.example_lines:
        cipher_text, arrow, plain_text = line.partition(" -> ")
        if not arrow or len(cipher_text) != len(plain_text):
            raise PromptError(f"not a cipher example: {line!r}")
        for c, p in zip(cipher_text, plain_text):
            if (c == " ") != (p == " ") or letter_map.setdefault(c, p) != p:
                raise PromptError(f"example {line!r} contradicts the letters before it")
    letter_map.pop(" ", None)
    if len(set(letter_map.values())) != len(letter_map):
        raise PromptError("two cipher letters decode to the same letter")
    return letter_map, parts.query.split()


def fits(cipher_word: str, plain_word: str, letter_map: dict[str, str]) -> bool:
    """Can ``cipher_word`` decode to ``plain_word`` by extending ``letter_map`` one-to-one?"""
    if len(cipher_word) != len(plain_word):
        return False
    used = set(letter_map.values())
    new: dict[str, str] = {}
    for c, p in zip(cipher_word, plain_word):
        if c in letter_map:
            if letter_map[c] != p:
                return False
        elif new.setdefault(c, p) != p or p in used:
            return False
    return len(set(new.values())) == len(new)


def sources(prompt: str) -> dict[str, str]:
    """For each cipher letter, the first example word that shows it, as ``word=plain``."""
    found: dict[str, str] = {}
    for line in split_prompt(prompt).example_lines:
        cipher_text, _, plain_text = line.partition(" -> ")
        for cipher_word, plain_word in zip(cipher_text.split(), plain_text.split()):
            for c in cipher_word:
                found.setdefault(c, f"{cipher_word}={plain_word}")
    return found


def read_off(letter: str, source: str, letter_map: dict[str, str]) -> str:
    """``q: qbz=cat, letter 1 -> c`` — the letter's place in an example word, and the plain
    letter in the same place (the ``stepwise`` style's lookup, one letter at a time)."""
    cipher_word = source.split("=")[0]
    return f"{letter}: {source}, letter {cipher_word.index(letter) + 1} -> {letter_map[letter]}"


def solve_from_prompt(prompt: str, style: str = "compact") -> tuple[str, str]:
    letter_map, words = parse(prompt)
    shown = sources(prompt) if style == "stepwise" else {}
    trace, decoded = [], []
    for word in words:
        partial = "".join(letter_map.get(c, "?") for c in word)
        if style == "stepwise":
            trace.append(f"{word}:")
            trace += [read_off(c, shown[c], letter_map) if c in shown
                      else f"{c}: learned above -> {letter_map[c]}" if c in letter_map
                      else f"{c}: in no example" for c in dict.fromkeys(word)]
            trace.append(f"{word} -> {' '.join(partial)} -> {partial}")
        else:
            trace.append(f"{word}: " + " ".join(f"{c}={letter_map.get(c, '?')}" for c in word)
                         + f" -> {partial}")
        if "?" in partial:
            candidates = sorted(w for w in VOCABULARY if fits(word, w, letter_map))
            if len(candidates) != 1:
                raise Ambiguous(f"{partial} fits {len(candidates)} vocabulary words")
            plain = candidates[0]
            learned = {c: p for c, p in zip(word, plain) if c not in letter_map}
            letter_map.update(learned)
            trace.append(f"{partial} fits only the word {plain}, so "
                         + " ".join(f"{c}={p}" for c, p in learned.items()))
            partial = plain
        decoded.append(partial)
    answer = " ".join(decoded)
    trace.append(check_line(f"all {len(decoded)} words are Wonderland words", answer))
    return "\n".join(trace), answer
