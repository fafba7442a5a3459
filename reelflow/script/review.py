"""The script gate's review page: the versions side by side (structure, emotion curve,
calibration problems), then each version's shot list. Built from object keys; the flow
publishes it as an artifact."""

from __future__ import annotations

from reelflow.script.calibration import CalibrationReport
from reelflow.script.rounds import Calibrated, Revised
from reelflow.store.artifacts import ArtifactStore
from reelflow.storyboard import Storyboard


def _cell(text: object) -> str:
    """One markdown table cell: no pipes, no line breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _problems_cell(report: CalibrationReport, limit: int = 4) -> str:
    counts = (
        f"{report.count('error')} errors, {report.count('warning')} warnings, "
        f"{report.count('info')} notes"
    )
    ranked = sorted(report.problems, key=lambda p: ["error", "warning", "info"].index(p.severity))
    lines = [f"**{p.severity}** {_cell(p.message)}" for p in ranked[:limit]]
    if len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more")
    return "<br>".join([counts, *lines])


def review_markdown(
    store: ArtifactStore,
    round_: int, versions: list[Calibrated], *, notes: str = "", revision: Revised | None = None
) -> str:
    """The storyboard gate's page: versions side by side, then each version's shot list."""
    boards = [store.get_json(v.storyboard_key, Storyboard) for v in versions]
    reports = [store.get_json(v.report_key, CalibrationReport) for v in versions]
    header = "| | " + " | ".join(f"version {k}" for k in range(len(versions))) + " |"
    rows = [header, "|---|" + "---|" * len(versions)]

    def row(label: str, cells: list[str]) -> None:
        rows.append(f"| **{label}** | " + " | ".join(cells) + " |")

    row("title", [_cell(b.title) for b in boards])
    row("logline", [_cell(b.logline) for b in boards])
    row("shots", [str(len(b.shots)) for b in boards])
    row("duration", [f"{b.duration:g} s" for b in boards])
    row(
        "structure",
        [
            "complete" if r.structure_complete else "missing " + ", ".join(r.acts.missing())
            for r in reports
        ],
    )
    row("emotion", [" ".join(str(i) for i in r.intensities) for r in reports])
    row("calibration", [f"{_cell(r.summary)} ({r.source})" for r in reports])
    row("problems", [_problems_cell(r) for r in reports])
    curves = []
    for v in versions:
        url = store.presigned_url(v.curve_key)
        curves.append(f"![emotion curve]({url})<br>[open]({url})")
    row("emotion curve", curves)
    row(
        "storyboard",
        [
            f"[{_cell(v.storyboard_key.rsplit('/', 1)[-1])}]"
            f"({store.presigned_url(v.storyboard_key)})"
            for v in versions
        ],
    )

    intro = [f"# Script, round {round_}", ""]
    if revision is not None:
        intro += [f"Revision of `{revision.parent_key}` from the notes: _{_cell(notes)}_", ""]
        if revision.summary:
            intro += [f"What changed: {_cell(revision.summary)}", ""]
        intro += [f"**warning:** {_cell(w)}" for w in revision.warnings]
        intro += [""] if revision.warnings else []
    intro += [
        "Choose a version (`version`, counted from 0). Approve it with empty notes, or write "
        "`notes` to have that version revised and calibrated again.",
        "",
    ]
    details = []
    for k, (board, report) in enumerate(zip(boards, reports, strict=True)):
        details += [
            "",
            f"## version {k}: {_cell(board.title)}",
            "",
            "| shot | act | sec | camera | intensity | description |",
            "|---|---|---|---|---|---|",
        ]
        for shot, beat in zip(board.shots, report.emotion_curve, strict=True):
            camera = f"{shot.camera.size}, {shot.camera.angle}, {shot.camera.movement}"
            details.append(
                f"| {shot.id} | {report.acts.act_of(shot.id) or '-'} | {shot.duration:g} | "
                f"{camera} | {beat.intensity} | {_cell(shot.description)} |"
            )
    return "\n".join([*intro, *rows, *details]) + "\n"
