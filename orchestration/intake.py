"""Intake: validate and normalise incident text before anything plans from it.

Credentials pasted into the text (``token=...``, ``Bearer ...``) are redacted here, before the
text is planned from, stored or echoed: the plan, the incident row and every card see the same
redacted text.
"""

import re
import unicodedata

from common.redaction import redact_text
from orchestration import planner
from orchestration.errors import InputRejected
from orchestration.knowledge import KnowledgeSnapshot

MAX_TEXT = 500
_INJECTION = [
    (
        re.compile(
            r"(?i)\b(ignore|disregard|forget)\b.{0,30}\b(previous|prior|above|all)\b.{0,20}"
            r"\b(instructions?|rules?|prompts?)\b"
        ),
        "it tries to override instructions",
    ),
    (re.compile(r"(?i)\b(system|developer)\s+prompt\b"), "it mentions a system prompt"),
    (re.compile(r"\$\(|`|\$\{"), "it contains shell substitution ($(...), `...` or ${...})"),
    (
        re.compile(r"[;&|]\s*(rm|curl|wget|bash|sh|sudo|chmod|dd|mkfs)\b"),
        "it chains a shell command",
    ),
    (re.compile(r"(?i)<\s*script\b"), "it contains a script tag"),
    (re.compile(r"\.\./"), "it contains a path traversal (../)"),
]


def normalise(text: str) -> str:
    """NFKC, control characters removed, whitespace collapsed, trimmed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def validate(text: str) -> str:
    """The normalised, redacted text, or InputRejected with a plain reason."""
    clean = redact_text(normalise(text))
    if not clean:
        raise InputRejected("Describe the incident, e.g. `/incident checkout-api is down`.")
    if len(clean) > MAX_TEXT:
        raise InputRejected(
            f"The description is {len(clean)} characters; keep it under {MAX_TEXT}."
        )
    for pattern, why in _INJECTION:
        if pattern.search(clean):
            raise InputRejected(
                f"This text was refused because {why}. Describe the symptom "
                "in plain words, e.g. `checkout-api is down`."
            )
    return clean


def screen(snapshot: KnowledgeSnapshot, text: str) -> str:
    """The title of the plan ``text`` would get from ``snapshot``; InputRejected or NoMatch
    (each with its plain reason) when it would get none.

    In memory and cheap: an acknowledgement says this much, and no more, before the incident
    is opened (where the same check runs again against the knowledge of that moment).
    """
    return planner.chosen_runbook(snapshot, validate(text)).title
