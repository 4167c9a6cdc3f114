"""A run's TensorBoard events read back: the one reader behind every report and figure.

    read_scalars(run_dir, tags)                       # {tag: (steps, values)}
    read_events(run_dir, prefixes=..., histograms=True)  # scalars and the last histogram of each tag

Curves come from the event files themselves (EventAccumulator), never from text logs.
Every scalar point is kept (size guidance 0; TensorBoard's default keeps a sample of
10,000). Events that a killed process wrote after its last checkpoint are dropped: the
trainers reopen a resumed run with SummaryWriter(purge_step=...), and EventAccumulator
(purge_orphaned_data, on by default) discards the earlier points at steps >= that step when
it reads the restart marker, so a resumed run's curves hold each step once, the resumed
run's value.
"""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

Curves = dict[str, tuple[list[int], list[float]]]


def read_events(run_dir: str | Path | None, tags=None, prefixes=None, histograms: bool = False) -> dict:
    """{"scalars": {tag: (steps, values)}, "histograms": {tag: (step, bucket_limits, bucket_counts)}}
    of a run directory's events, in one pass over the files.

    Scalars: the tags in `tags` (in that order; those absent are left out) and/or starting with
    one of `prefixes`; None = no restriction. Histograms (only with histograms=True, else {}):
    the last recorded one of every histogram tag. A run directory that is not there (None, "",
    or a results.json re-rendered on another machine) reads as no events."""
    if not run_dir or not Path(run_dir).is_dir():
        return {"scalars": {}, "histograms": {}}
    # 0 = keep every event; histograms only when asked for (each one is a full bucket list)
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, **({"histograms": 0} if histograms else {})})
    acc.Reload()
    have = acc.Tags()
    names = have.get("scalars", [])
    if tags is not None:
        present = set(names)
        names = [t for t in tags if t in present]
    if prefixes is not None:
        names = [t for t in names if t.startswith(tuple(prefixes))]
    scalars = {}
    for t in names:
        events = acc.Scalars(t)
        scalars[t] = ([e.step for e in events], [e.value for e in events])
    hists = {}
    if histograms:
        for t in have.get("histograms", []):
            events = acc.Histograms(t)
            if not events:  # every event of the tag purged on a resume
                continue
            last = events[-1]
            h = last.histogram_value
            hists[t] = (last.step, list(h.bucket_limit), list(h.bucket))
    return {"scalars": scalars, "histograms": hists}


def read_scalars(run_dir: str | Path | None, tags=None, prefixes=None) -> Curves:
    """{tag: (steps, values)} of the scalar tags of a run (see read_events); {} when the
    run directory is not there."""
    return read_events(run_dir, tags, prefixes)["scalars"]
