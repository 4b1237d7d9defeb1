"""Five-field cron (what people write) -> KFP's six-field form (seconds first), validated.

KFP's scheduled-workflow controller parses cron with a leading seconds field
(``0 0 3 * * *`` is 03:00 every day); people and Argo write five fields. The
conversion refuses what the controller would refuse later, with one line naming the
field: values out of range, bad steps, unknown month or weekday names.
"""

from __future__ import annotations

import re

from gmpo_kfp.config import ConfigError, KueueConfig
from gmpo_kfp.presets import DEFAULT_PRESET

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
#: field name, lowest, highest, names (index + offset = value)
FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 6, DAYS),
)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_PART = re.compile(r"^(\*|\?|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?$")


def _value(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    upper = text.upper()
    if names and upper in names:
        return names.index(upper) + (1 if name == "month" else 0)
    if not text.isdigit():
        hint = f" or {names[0]}-{names[-1]}" if names else ""
        raise ValueError(f"{name} {text!r} is not a number{hint}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{name} {value} is outside {low}-{high}")
    return value


def _check_field(field: str, name: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for part in field.split(","):
        m = _PART.match(part)
        if not m:
            raise ValueError(f"{name} {part!r} is not a value, range, list or step")
        base, step = m.groups()
        if step is not None and int(step) == 0:
            raise ValueError(f"{name} step 0 in {part!r}")
        if base == "?" and name not in ("day of month", "day of week"):
            raise ValueError(f"{name}: '?' only stands for a day")
        if base in ("*", "?"):
            continue
        lo_text, _, hi_text = base.partition("-")
        lo = _value(lo_text, name, low, high, names)
        if hi_text and _value(hi_text, name, low, high, names) < lo:
            raise ValueError(f"{name} range {base!r} runs backwards")


def kfp_cron(expression: str) -> str:
    """``"0 3 * * *"`` -> ``"0 0 3 * * *"``; a :class:`ConfigError` naming ``--cron`` otherwise."""
    text = ALIASES.get(expression.strip().lower(), expression.strip())
    fields = text.split()
    if len(fields) != 5:
        raise ConfigError(
            f"--cron {expression!r}: give five fields (minute hour day month weekday), "
            'e.g. "0 3 * * *" for 03:00 daily'
        )
    for field, (name, low, high, names) in zip(fields, FIELDS, strict=True):
        try:
            _check_field(field, name, low, high, names)
        except ValueError as exc:
            raise ConfigError(f"--cron {expression!r}: {exc}") from None
    return " ".join(["0", *fields])


def schedule(
    host: str,
    cron: str,
    *,
    preset: str = DEFAULT_PRESET,
    overrides: tuple[str, ...] | list[str] = (),
    params: tuple[str, ...] | list[str] = (),
    experiment: str = "gmpo",
    name: str | None = None,
    max_concurrency: int = 1,
    namespace: str = "",
    kueue: KueueConfig | None = None,
) -> dict[str, str]:
    """Create a KFP recurring run of the compiled pipeline; its id and cron. Its runs'
    pods run as :data:`~gmpo_kfp.settings.SERVICE_ACCOUNT` (in ``namespace`` on a
    multi-user KFP), as ``gmpo submit``'s do."""
    from gmpo_kfp import settings
    from gmpo_kfp.workflow.kfp_runs import pipeline_parameters, with_client

    six = kfp_cron(cron)  # a bad cron fails before anything is contacted
    args = pipeline_parameters(preset=preset, overrides=overrides, params=params)

    def create(client, package):
        experiment_id = client.create_experiment(
            experiment, namespace=namespace or None
        ).experiment_id
        return client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name or f"gmpo-{preset}-schedule",
            cron_expression=six,
            max_concurrency=max_concurrency,
            no_catchup=True,
            params=args,
            pipeline_package_path=package,
            enable_caching=False,
            service_account=settings.SERVICE_ACCOUNT,
        )

    job = with_client(host, "schedule", create, namespace=namespace, kueue=kueue)
    return {"recurring_run_id": job.recurring_run_id, "cron": six}
