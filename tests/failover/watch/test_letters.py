"""Providers' letters: termination and suspension letters are notices, others are not.

The letters under letters/*.eml were written for these tests in the wordings
providers use; ``EXPECTED`` says what each must give.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from failover.watch.letters import judge_letter, read_letter

LETTERS = Path(__file__).parent / "letters"
PROVIDERS = frozenset({"aws", "hetzner"})
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC).timestamp()  # the letters came this morning


def at(iso: str) -> float:
    """Unix seconds of an ISO 8601 time with a zone."""
    return datetime.fromisoformat(iso).timestamp()


# file -> (provider, deadline), or None for a letter that is not a notice
EXPECTED: dict[str, tuple[str, float] | None] = {
    # "will be terminated on 24 November 2026 at 12:00 UTC"; an old invoice date is skipped
    "aws-account-termination.eml": ("aws", at("2026-11-24T12:00:00Z")),
    # "has decided to close ... will take effect in 48 hours" (letter of 22 Nov 18:00 UTC)
    "aws-closure-in-48-hours.eml": ("aws", at("2026-11-24T18:00:00Z")),
    # "has been suspended, effective immediately" (multipart, quoted-printable): its date
    "aws-suspended-immediately.eml": ("aws", at("2026-11-23T13:40:00Z")),
    # "on November 24, 2026 at 4:00 PM PST"
    "aws-suspension-pst.eml": ("aws", at("2026-11-25T00:00:00Z")),
    # "We are terminating your AWS account", no deadline: the letter's date
    "aws-termination-no-deadline.eml": ("aws", at("2026-11-23T11:00:00Z")),
    # forwarded by a colleague: the provider from the text, a date alone is 00:00 UTC
    "forwarded-hetzner-termination.eml": ("hetzner", at("2026-11-28T00:00:00Z")),
    # HTML only: "has been locked" happened at the letter's date (13:15 +0100)
    "hetzner-account-locked.eml": ("hetzner", at("2026-11-23T12:15:00Z")),
    # subject "on 1 December 2026", body "at 09:00 CET on 1 December 2026"
    "hetzner-closure-time-first.eml": ("hetzner", at("2026-12-01T08:00:00Z")),
    # "notice of termination of the contract ... as of 30.11.2026 at 18:00 CET"
    "hetzner-contract-termination.eml": ("hetzner", at("2026-11-30T17:00:00Z")),
    # "will be suspended effective 2026-11-24 12:00 UTC"
    "hetzner-project-suspension.eml": ("hetzner", at("2026-11-24T12:00:00Z")),
    # "will be deactivated within 24 hours" (letter of 23 Nov 07:30 +0100)
    "hetzner-project-within-24-hours.eml": ("hetzner", at("2026-11-24T06:30:00Z")),
    "not-aws-invoice.eml": None,  # "if payment is not received, your account may be suspended"
    "not-hetzner-abuse.eml": None,  # "solve the problem within 24 hours. Otherwise we will block"
    "not-aws-retirement.eml": None,  # an EC2 instance retirement
    "not-hetzner-maintenance.eml": None,  # "services will be shut down for up to 30 minutes"
    "not-aws-newsletter.eml": None,  # "termination protection"
    "not-aws-reactivated.eml": None,  # "will not be suspended"
    "not-our-provider.eml": None,  # a provider none of our sites runs on
}
NOTICES = {name: want for name, want in EXPECTED.items() if want is not None}


def raw(name: str) -> bytes:
    """A test letter's bytes."""
    return (LETTERS / name).read_bytes()


def test_every_letter_on_disk_has_an_expectation() -> None:
    assert sorted(p.name for p in LETTERS.glob("*.eml")) == sorted(EXPECTED)
    assert len(NOTICES) >= 5 and len(EXPECTED) - len(NOTICES) >= 4


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_letter_gives_its_provider_and_deadline_or_nothing(name: str) -> None:
    verdict = judge_letter(raw(name), providers=PROVIDERS, now=NOW)
    want = EXPECTED[name]
    if want is None:
        assert verdict.notice is None, verdict
        assert verdict.why
        return
    assert verdict.notice is not None, verdict.why
    notice = verdict.notice
    assert (notice.provider, notice.deadline) == want, (
        notice.provider, datetime.fromtimestamp(notice.deadline, UTC).isoformat(), notice.text)
    assert notice.source == "mailbox"
    assert notice.received == NOW
    assert notice.reference.startswith("<") and notice.reference.endswith(">")
    assert notice.reference in raw(name).decode()


def test_the_notice_text_names_the_sender_and_how_the_deadline_was_read() -> None:
    notice = read_letter(raw("aws-account-termination.eml"), providers=PROVIDERS, now=NOW)
    assert notice is not None
    assert "no-reply-aws@amazon.com" in notice.text
    assert "'24 November 2026 at 12:00 UTC'" in notice.text
    missing = read_letter(raw("aws-termination-no-deadline.eml"), providers=PROVIDERS, now=NOW)
    assert missing is not None
    assert "no deadline in the letter" in missing.text


def test_a_letter_read_again_later_is_the_same_notice() -> None:
    # Relative and immediate deadlines count from the letter's date, not the poll.
    for name in ("aws-closure-in-48-hours.eml", "aws-suspended-immediately.eml",
                 "aws-termination-no-deadline.eml"):
        first = read_letter(raw(name), providers=PROVIDERS, now=NOW)
        later = read_letter(raw(name), providers=PROVIDERS, now=NOW + 3600)
        assert first is not None and later is not None
        assert first.id == later.id, name


def test_only_the_providers_of_our_sites_count() -> None:
    verdict = judge_letter(raw("hetzner-project-suspension.eml"), providers={"aws", "lab"},
                           now=NOW)
    assert verdict.notice is None
    assert verdict.why == "from hetzner, which runs none of our sites"
    # a provider outside the known list is recognised by its own name
    letter = make("Your Lab account has been closed.", sender="ops@lab.example")
    notice = read_letter(letter, providers={"aws", "lab"}, now=NOW)
    assert notice is not None and notice.provider == "lab"


def make(body: str, *, subject: str = "Important information about your account",
         sender: str = "no-reply-aws@amazon.com",
         date: str = "Mon, 23 Nov 2026 09:00:00 +0000") -> bytes:
    """A small plain-text letter."""
    return (f"From: Someone <{sender}>\nTo: ops@social.example\nSubject: {subject}\n"
            f"Date: {date}\nMessage-ID: <made@example>\n\n{body}\n").encode()


SENT = at("2026-11-23T09:00:00Z")


@pytest.mark.parametrize(("body", "want"), [
    # a threat with a way out is for a human, not a notice
    ("Your AWS account will be suspended on 24 November 2026 unless you pay the balance.",
     None),
    ("To avoid the termination of your AWS account, update your payment method.", None),
    ("Learn how to protect your AWS account from being suspended by mistake.", None),
    # ...but a reason given for an end is no condition
    ("To protect our network, we have suspended your AWS account.", SENT),
    ("To prevent further abuse, your AWS account has been blocked.", SENT),
    # what already happened stands, whatever condition follows
    ("Your AWS account has been suspended and will be closed if you do not reply.", SENT),
    ("Your AWS account has been suspended. If you think this is a mistake, write to us.",
     SENT),
    ("Your AWS account will not be suspended.", None),
    ("Your AWS account will be closed on 2026-11-24T12:00:00Z.", at("2026-11-24T12:00:00Z")),
    ("Your AWS account will be closed on 24 Nov 2026 at 13:00 +01:00.",
     at("2026-11-24T12:00:00Z")),
    ("Your AWS account will be closed on 24 November 2026 at 12:00.",
     at("2026-11-24T12:00:00Z")),
    ("The AWS Customer Agreement will be terminated on the 24th of November 2026 at 11:30 PM "
     "GMT.", at("2026-11-24T23:30:00Z")),
    ("Your AWS services will be discontinued within two days.", SENT + 2 * 86400),
    ("Your AWS account will be terminated on 24 November 2026 at 12:00 UTC and we would "
     "remind you that your account was opened on 3 March 2019.", at("2026-11-24T12:00:00Z")),
])
def test_small_wordings(body: str, want: float | None) -> None:
    notice = read_letter(make(body), providers=PROVIDERS, now=NOW)
    assert (notice.deadline if notice else None) == want, notice


def test_a_time_without_a_zone_is_read_as_utc_and_said_so() -> None:
    notice = read_letter(make("Your AWS account will be closed on 24 November 2026 at 12:00."),
                         providers=PROVIDERS, now=NOW)
    assert notice is not None
    assert "no zone written: read as UTC" in notice.text


def test_a_letter_dated_in_the_future_counts_from_now() -> None:
    letter = make("Your AWS account will be closed within 24 hours.",
                  date="Tue, 01 Dec 2026 09:00:00 +0000")
    notice = read_letter(letter, providers=PROVIDERS, now=NOW)
    assert notice is not None and notice.deadline == NOW + 86400


def test_a_letter_naming_several_providers_from_none_of_them_is_not_a_notice() -> None:
    letter = make("Your Hetzner account will be closed on 24 November 2026; your AWS account "
                  "will be closed on 25 November 2026.", sender="ops@social.example")
    verdict = judge_letter(letter, providers=PROVIDERS, now=NOW)
    assert verdict.notice is None
    assert verdict.why == "names several providers (aws, hetzner) and is from none of them"


@pytest.mark.parametrize("letter", [b"", b"\x00\xff not a letter",
                                    b"Content-Type: text/plain; charset=x-bogus\n\n\xff\xfe"])
def test_garbage_is_not_a_notice_and_does_not_raise(letter: bytes) -> None:
    assert read_letter(letter, providers=PROVIDERS, now=NOW) is None
