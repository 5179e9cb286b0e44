"""What the page's header and each card's token bar say, computed from the shots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cosmos_workflow.report._shots import PENDING, Shot

STATUS_ORDER = ("ok", "text_only", "fallback", "error", PENDING)
#: width of the token bar's coordinate space (an SVG viewBox): tokens are scaled into it
BAR_WIDTH = 1000
_MAX_LISTED = 6


@dataclass(frozen=True)
class Segment:
    kind: str
    """``image``, ``text``, ``answer`` (tokens written) or ``reserved`` (answer budget left unused)."""
    tokens: int
    x: float
    width: float


@dataclass(frozen=True)
class Budget:
    """A shot's token budget as bar segments against ``limit`` (``max_model_len``)."""

    segments: list[Segment]
    limit: int
    used: int
    """Prompt tokens plus ``max_tokens``: what the planner guaranteed fits in ``limit``."""
    limit_x: float
    """Where ``limit`` falls on the bar (the right end unless the shot overflowed)."""

    @property
    def fits(self) -> bool:
        return self.used <= self.limit


def budget_of(shot: Shot) -> Budget | None:
    """None when the shot has no token counts (a pending spec, a model that never loaded)."""
    if not shot.max_model_len or not shot.prompt_tokens:
        return None
    answer = min(shot.completion_tokens, shot.max_tokens) if shot.max_tokens else shot.completion_tokens
    parts = [
        ("image", shot.image_tokens),
        ("text", shot.text_tokens),
        ("answer", answer),
        ("reserved", max(0, shot.max_tokens - answer)),
    ]
    used = shot.prompt_tokens + max(shot.max_tokens, answer)
    scale = BAR_WIDTH / max(shot.max_model_len, used)
    segments, x = [], 0.0
    for kind, tokens in parts:
        segments.append(Segment(kind, tokens, round(x, 2), round(tokens * scale, 2)))
        x += tokens * scale
    limit_x = round(shot.max_model_len * scale, 2)
    return Budget(segments=segments, limit=shot.max_model_len, used=used, limit_x=limit_x)


@dataclass(frozen=True)
class Summary:
    """The header: counts by status, tokens, time, model, engine, settings."""

    total: int
    counts: list[tuple[str, int]]
    image_tokens: int
    text_tokens: int
    completion_tokens: int
    first: str | None
    last: str | None
    span: str | None
    elapsed: str | None
    settings: list[tuple[str, str]]


def summarise(shots: Sequence[Shot], *, elapsed: float | None = None) -> Summary:
    counts = Counter(shot.status for shot in shots)
    times = sorted(t for t in (_parse_time(s.timestamp) for s in shots) if t is not None)
    return Summary(
        total=len(shots),
        counts=[(status, counts[status]) for status in _statuses(counts)],
        image_tokens=sum(s.image_tokens for s in shots),
        text_tokens=sum(s.text_tokens for s in shots),
        completion_tokens=sum(s.completion_tokens for s in shots),
        first=_clock(times[0]) if times else None,
        last=_clock(times[-1]) if times else None,
        span=_duration((times[-1] - times[0]).total_seconds()) if len(times) > 1 else None,
        elapsed=_duration(elapsed) if elapsed is not None else None,
        settings=settings_of(shots),
    )


def _statuses(counts: Counter[str]) -> list[str]:
    known = [status for status in STATUS_ORDER if counts[status]]
    return known + sorted(set(counts) - set(STATUS_ORDER))


def settings_of(shots: Sequence[Shot]) -> list[tuple[str, str]]:
    """Each setting with the distinct values the shots used (shots never run are left out)."""
    ran = [shot for shot in shots if shot.model or shot.max_model_len]
    rows = [
        ("model", _distinct(s.model for s in ran)),
        ("engine", _distinct(s.engine for s in ran)),
        ("max_model_len", _distinct(s.max_model_len for s in ran)),
        ("max_tokens", _distinct(s.max_tokens for s in ran)),
        ("frames per shot", _distinct(len(s.frame_indices) for s in ran)),
        ("sizes sent", _distinct(f"{s.width}x{s.height}" for s in ran if s.frame_size)),
    ]
    keys = sorted({key for shot in ran for key in shot.sampling} - {name for name, _ in rows})
    rows += [(key, _distinct(s.sampling.get(key) for s in ran if key in s.sampling)) for key in keys]
    return [(name, values) for name, values in rows if values]


def _distinct(values: Iterable[object]) -> str:
    counts = Counter("null" if v is None else str(v) for v in values if v != "")
    listed = [value for value, _ in counts.most_common(_MAX_LISTED)]
    more = len(counts) - len(listed)
    return ", ".join(listed) + (f" and {more} more" if more > 0 else "")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"
