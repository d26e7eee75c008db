"""Providers' letters: recognise a termination or suspension and read its deadline.

A letter is a notice when one of its sentences (the subject counts as one)
*states* that an account, contract, project or service is or will be ended:
an action word (terminate, suspend, close, cancel, deactivate, discontinue,
shut down, block, lock, disable) and an object word (account, contract,
agreement, subscription, service, project, access) in one sentence, with

- no condition before the action (if, unless, otherwise, may be...): "if
  payment is not received, your account may be suspended" is a warning; nor
  an end that is warded off ("to avoid the suspension of your account");
- for what has not happened yet, no condition after it either ("will be
  suspended unless you pay" is left to a human; "has been suspended; if you
  think this is wrong, write to us" is a notice);
- no negation of the action ("will not be suspended"), no maintenance word
  (maintenance, retirement, reboot, migration) and no outage window ("for 30
  minutes"); a subject about maintenance makes the whole letter maintenance.

"Termination protection" (an EC2 setting) is struck out before anything is
read. The provider is the sender's domain (amazon, aws, amazonaws -> aws;
hetzner -> hetzner; any other provider by its own name), else the one
provider the text names; only providers of our sites count.

The deadline is the earliest of what the stating sentences (and the sentence
after each) say: a date with a time and zone ("24 November 2026 at 12:00
UTC", "2026-11-24 12:00 UTC", "November 24, 2026 at 4:00 PM PST",
"30.11.2026 at 18:00 CET", "12:00 UTC on 24 November 2026"), a date alone
(00:00 UTC that day), a time from the letter ("within 24 hours", "in 48
hours"), or the letter itself ("effective immediately", "has been
suspended"); failing that, anything the letter says; failing that, the
letter's date, and the notice's text says so. Dates more than a day before
the letter are history ("the invoice of 1 October") and are skipped. "The
letter" is its Date header (never later than now, else now): a letter read
twice then gives the same deadline (and its Message-ID names the notice).
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from failover.watch.signals import Notice

KNOWN_PROVIDERS: Mapping[str, tuple[str, ...]] = {
    "aws": ("aws", "amazon", "amazonaws"),
    "hetzner": ("hetzner",),
}

_ACTION = (r"(?:terminat\w*|suspen[ds]\w*|clos(?:e|ed|es|ing|ure)|cancel\w*|deactivat\w*"
           r"|discontinu\w*|shut(?:ting)?\s+down|block(?:ed|ing)?|lock(?:ed|ing)?|disabl\w*)")
_OBJECT = (r"\b(?:accounts?|contracts?|agreements?|subscriptions?|services?|projects?"
           r"|(?:customer|business)\s+relationship|access)\b")
_ACTION_RE = re.compile(rf"\b{_ACTION}\b", re.I)
_OBJECT_RE = re.compile(_OBJECT, re.I)
_CONDITION = re.compile(
    r"\b(?:if|unless|otherwise|whether|should\s+you|fail(?:s|ure)?\s+to|in\s+case"
    r"|in\s+the\s+event)\b"
    r"|\b(?:may|might|could|can|would)\s+(?:also\s+)?(?:be|result|lead|cause|face)\b", re.I)
# "to avoid the suspension of", "prevents accidental termination": the end is what is
# warded off. ("To prevent further abuse, we have blocked your account" is an end.)
_WARDED_OFF = re.compile(rf"\b(?:avoid|prevent|protect)\w*\s+(?:[\w-]+\s+){{0,5}}{_ACTION}\b",
                         re.I)
_NEGATED = re.compile(rf"\b(?:not|never|no|won't|n't)\s+(?:\w+\s+){{0,2}}{_ACTION}\b", re.I)
_DONE = re.compile(
    rf"\b(?:(?:has|have)\s+(?:now\s+)?been|was|were|(?:is|are)\s+(?:now|currently)"
    rf"|we\s+have(?:\s+now)?)\s+(?:\w+\s+)?{_ACTION}\b", re.I)
_MAINTENANCE = re.compile(
    r"\b(?:maintenance|retire\w*|reboot\w*|migrat\w*|scheduled\s+event)\b"
    r"|\bfor\s+(?:up\s+to\s+|approximately\s+|about\s+|around\s+)?\d+\s+(?:minutes?|hours?)\b",
    re.I)
_PROTECTION = re.compile(r"\btermination\s+protection\b", re.I)
_IMMEDIATE = re.compile(
    rf"\b(?:effective\s+immediately|with\s+immediate\s+effect|effective\s+(?:today|now)"
    rf"|immediately\s+(?:\w+\s+)?{_ACTION}|{_ACTION}\s+(?:\w+\s+)?immediately)\b", re.I)

_MONTHS = {m: i for i, names in enumerate(
    [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
     ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
     ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
     ("december", "dec")], start=1) for m in names}
_MONTH = "(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ZONES = {"utc": 0, "gmt": 0, "z": 0, "cet": 60, "met": 60, "cest": 120, "mest": 120,
          "bst": 60, "est": -300, "edt": -240, "cst": -360, "cdt": -300, "pst": -480,
          "pdt": -420}
_ZONE = (r"(?:\s*\(?(?P<zone>utc|gmt|z|cet|met|cest|mest|bst|est|edt|cst|cdt|pst|pdt)\b\)?)?"
         r"(?P<offset>\s*[+-]\d{1,2}(?::?\d{2})?\b)?")
_TIME = (r"(?P<hour>\d{1,2})(?:[:.](?P<minute>\d{2}))?(?::(?P<second>\d{2}))?"
         r"\s*(?P<ampm>[ap]\.?m\.?(?!\w))?")
_DATES = [re.compile(p, re.I) for p in (
    r"\b(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?)?",
    rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\.?\s+(?:of\s+)?{_MONTH},?\s+(?P<year>\d{{4}})\b",
    rf"\b{_MONTH}\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})\b",
    r"\b(?P<day>\d{1,2})\.(?P<month>\d{1,2})\.(?P<year>\d{4})\b",
)]
_TIME_AFTER = re.compile(rf"(?:\s*,)?(?:\s+at|\s*-|\s*,)?\s*{_TIME}{_ZONE}", re.I)
_TIME_BEFORE = re.compile(rf"(?:at\s+)?{_TIME}{_ZONE}\s*(?:on|,)?\s*$", re.I)
_ZONE_AFTER = re.compile(_ZONE, re.I)
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fourteen": 14, "thirty": 30,
            "twenty-four": 24, "forty-eight": 48, "seventy-two": 72}
_UNITS = {"min": 60, "minute": 60, "hr": 3600, "hour": 3600, "day": 86400, "week": 604800}
_RELATIVE = re.compile(
    r"\b(?:within|in|after)\s+(?:the\s+next\s+)?(?P<n>\d+|"
    + "|".join(sorted(_NUMBERS, key=len, reverse=True))
    + r")\s*-?\s*(?P<unit>minutes?|mins?|hours?|hrs?|days?|weeks?)\b", re.I)
_SENTENCE_END = re.compile(r"\n\s*\n|(?<=[.!?])\s+(?=[A-Z\"'(])")
_HISTORY = 86400.0  # a date this much before the letter is history, not a deadline
_MAX_TEXT = 100_000  # characters of a body read: notices are short, quoted threads are not


@dataclass(frozen=True)
class Verdict:
    """What a letter is: a notice, or not one and why (for the log)."""

    notice: Notice | None
    why: str  # one phrase: "aws: will be terminated on ...", "no statement of termination"
    subject: str
    sender: str
    message_id: str


def read_letter(raw: bytes, *, providers: Collection[str], now: float) -> Notice | None:
    """The termination or suspension notice a letter carries, or None."""
    return judge_letter(raw, providers=providers, now=now).notice


def judge_letter(raw: bytes, *, providers: Collection[str], now: float) -> Verdict:
    """Read one letter (RFC 5322 bytes) and say whether it is a notice, and why."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    subject = " ".join(str(message.get("subject", "") or "").split())
    sender, domain = _sender(message)
    message_id = str(message.get("message-id", "") or "").strip()

    def verdict(notice: Notice | None, why: str) -> Verdict:
        return Verdict(notice, why, subject, sender, message_id)

    if _MAINTENANCE.search(subject):
        return verdict(None, "a maintenance announcement")
    text = _PROTECTION.sub("(setting)", f"{subject}\n\n{_body(message)}")
    sentences = [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s.strip()]
    stating = [i for i, s in enumerate(sentences) if _states_an_end(s)]
    if not stating:
        return verdict(None, "no statement that an account, contract or service ends")
    provider, why_not = _provider(domain, [sentences[i] for i in stating], text, providers)
    if provider is None:
        return verdict(None, why_not)
    sent = _sent(message, now)
    scope = " ".join(sentences[j] for i in stating for j in (i, i + 1) if j < len(sentences))
    deadline, how = _deadline(scope, sent, done=any(_DONE.search(sentences[i])
                                                     for i in stating))
    if deadline is None:
        deadline, how = _deadline(text, sent, done=False)
    if deadline is None:
        deadline, how = sent, "no deadline in the letter: taken as the letter's date"
    # Quote the body's statement (the subject is quoted anyway), shortened.
    statement = sentences[next((i for i in stating if i > 0), stating[0])]
    if len(statement) > 200:
        statement = statement[:197] + "..."
    says = f"; it says {statement!r}" if statement != subject else ""
    notice = Notice(provider, deadline, "mailbox",
                    text=f"letter from {sender or 'an unknown sender'}: {subject!r}{says} "
                         f"(deadline: {how})",
                    received=now, reference=message_id)
    return verdict(notice, f"{provider}: {statement!r}")


def _states_an_end(sentence: str) -> bool:
    """Whether a sentence says that an account, contract or service is or will be ended."""
    action = _ACTION_RE.search(sentence)
    if action is None or not _OBJECT_RE.search(sentence):
        return False
    if _NEGATED.search(sentence) or _WARDED_OFF.search(sentence) \
            or _MAINTENANCE.search(sentence):
        return False
    if _CONDITION.search(sentence, 0, action.start()):
        return False
    # What already happened stands whatever follows; a threat with a way out does not.
    return bool(_DONE.search(sentence)) or not _CONDITION.search(sentence, action.end())


def _sender(message: Message) -> tuple[str, str]:
    header = message.get("from")
    addresses = getattr(header, "addresses", ())
    if not addresses:
        return str(header or ""), ""
    address = addresses[0]
    return str(address.addr_spec), str(address.domain).lower()


def _words(provider: str) -> tuple[str, ...]:
    return KNOWN_PROVIDERS.get(provider, (provider.lower(),))


def _provider(domain: str, stating: list[str], text: str,
              providers: Collection[str]) -> tuple[str | None, str]:
    labels = set(domain.split("."))
    for name in sorted({*KNOWN_PROVIDERS, *providers}):
        if labels & set(_words(name)):
            if name in providers:
                return name, ""
            return None, f"from {name}, which runs none of our sites"

    def named(where: str) -> list[str]:
        return sorted(p for p in providers if any(
            re.search(rf"\b{re.escape(w)}\b", where, re.I) for w in _words(p)))

    in_text = named(text)
    if len(in_text) == 1:
        return in_text[0], ""
    if not in_text:
        return None, "names none of our sites' providers"
    in_statement = named(" ".join(stating))
    if len(in_statement) == 1:
        return in_statement[0], ""
    return None, f"names several providers ({', '.join(in_text)}) and is from none of them"


def _body(message: Message) -> str:
    if not isinstance(message, EmailMessage):
        return ""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # an unknown or lying charset: read what we can
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    content = content[:_MAX_TEXT]
    if part.get_content_subtype() == "html":
        content = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", content)
        content = re.sub(r"(?i)<br\s*/?>|</(?:p|div|h\d|li|tr|table)\s*>", "\n\n", content)
        content = html.unescape(re.sub(r"<[^>]*>", " ", content))
    return content


def _sent(message: Message, now: float) -> float:
    """When the letter was sent (its Date header), never later than now."""
    try:
        when = parsedate_to_datetime(str(message.get("date", "") or ""))
    except (TypeError, ValueError, IndexError):
        return now
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(when.timestamp(), now)


def _deadline(text: str, sent: float, *, done: bool) -> tuple[float | None, str]:
    """The earliest deadline ``text`` names, and how it was read; (None, "") when none."""
    dates = list(_dates(text, sent))
    timed_days = {day for _, _, day, timed in dates if timed}
    # "Closure on 1 December" in the subject and "at 09:00 CET on 1 December" below
    # are one deadline: the day alone does not make it midnight.
    found = [(when, how) for when, how, day, timed in dates
             if timed or day not in timed_days]
    found += _relative(text, sent)
    if done:
        found.append((sent, "it has already happened: the letter's date"))
    if _IMMEDIATE.search(text):
        found.append((sent, "effective immediately: the letter's date"))
    if not found:
        return None, ""
    return min(found)


def _dates(text: str, sent: float) -> Iterator[tuple[float, str, datetime, bool]]:
    """Each date ``text`` writes: when, how it was read, its day, whether a time came with it."""
    for pattern in _DATES:
        for match in pattern.finditer(text):
            parts = match.groupdict()
            month = _MONTHS[parts["mon"].lower()] if parts.get("mon") else int(parts["month"])
            try:
                day = datetime(int(parts["year"]), month, int(parts["day"]), tzinfo=UTC)
            except ValueError:
                continue
            clock = _clock(text, match, parts)
            if clock is None:
                when, how = day, f"{match[0]!r}, a date alone: 00:00 UTC"
            else:
                when, how = day + clock[0], clock[1]
            if when.timestamp() >= sent - _HISTORY:
                yield when.timestamp(), how, day, clock is not None


def _clock(text: str, match: re.Match[str],
           parts: dict[str, str | None]) -> tuple[timedelta, str] | None:
    """The time of day (and zone) written with a date, as an offset from its midnight UTC."""
    if parts.get("hour"):  # ISO 8601 carries its time; its zone may follow
        zone = _ZONE_AFTER.match(text, match.end())
        return _at(parts, zone, match[0] + (zone[0] if zone else ""))
    after = _TIME_AFTER.match(text, match.end())
    if after and _is_time(after):
        return _at(after.groupdict(), after, match[0] + after[0])
    before = _TIME_BEFORE.search(text, max(0, match.start() - 40), match.start())
    if before and _is_time(before):
        return _at(before.groupdict(), before, before[0] + match[0])
    return None


def _at(parts: Mapping[str, str | None], zone: re.Match[str] | None,
        said: str) -> tuple[timedelta, str] | None:
    minutes = _zone_minutes(zone)
    if minutes is None:
        return None
    how = repr(" ".join(said.split()))
    if zone is None or not (zone["zone"] or zone["offset"]):
        how += " (no zone written: read as UTC)"
    return _since_midnight(parts) - timedelta(minutes=minutes), how


def _is_time(match: re.Match[str]) -> bool:
    return bool(match["minute"] or match["ampm"]) and int(match["hour"]) <= 24


def _zone_minutes(match: re.Match[str] | None) -> int | None:
    """The zone's offset from UTC in minutes (UTC when none is written); None if unreadable."""
    if match is None:
        return 0
    minutes = _ZONES[match["zone"].lower()] if match["zone"] else 0
    if match["offset"]:
        sign = -1 if match["offset"].strip().startswith("-") else 1
        digits = re.sub(r"\D", "", match["offset"])
        hours, mins = (int(digits[:-2]), int(digits[-2:])) if len(digits) > 2 \
            else (int(digits), 0)
        if hours > 14 or mins > 59:
            return None
        minutes += sign * (hours * 60 + mins)
    return minutes


def _since_midnight(parts: Mapping[str, str | None]) -> timedelta:
    hour = int(parts["hour"] or 0)
    ampm = (parts.get("ampm") or "").lower().replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    return timedelta(hours=hour, minutes=int(parts.get("minute") or 0),
                     seconds=int(parts.get("second") or 0))


def _relative(text: str, sent: float) -> list[tuple[float, str]]:
    """Each "within 24 hours" ``text`` writes, counted from the letter's date."""
    found = []
    for match in _RELATIVE.finditer(text):
        count = match["n"].lower()
        number = int(count) if count.isdigit() else _NUMBERS[count]
        unit = match["unit"].lower().rstrip("s")
        found.append((sent + number * _UNITS[unit], f"{match[0]!r} from the letter's date"))
    return found
