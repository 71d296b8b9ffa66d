"""Replay: re-run a recorded plan in a throwaway sandbox, with a failure forced where asked.

- :func:`load_recording` (``recording``): what the store kept of one plan - its rows, the
  knowledge versions it pinned, the votes cast on it and every tool call's recorded response.
- :class:`FailAt` (``failat``): ``STEP[:error|timeout|status=CODE]``, parsed and checked.
- :class:`ReplayTool` (``tools``): answers each call with its recorded response (or the forced
  failure, or, read-only and asked for, the real tool) and names the calls it has no answer for.
- :func:`replay` (``run``): the sandbox run on a temporary SQLite copy, the original votes cast
  again in order, and the :class:`ReplayReport` comparing both runs step by step.
- :func:`summarise` (``summary``): one run of a plan as :class:`RunSummary`, from any store.

The live store is only read; nothing of a replay is written to it.
"""

from orchestration.replay.failat import FailAt, FailKind
from orchestration.replay.recording import Recording, load_recording
from orchestration.replay.run import ReplayReport, StepComparison, replay
from orchestration.replay.summary import RunSummary, StepOutcome, summarise
from orchestration.replay.tools import Answers, ReplayTool

__all__ = [
    "Answers",
    "FailAt",
    "FailKind",
    "Recording",
    "ReplayReport",
    "ReplayTool",
    "RunSummary",
    "StepComparison",
    "StepOutcome",
    "load_recording",
    "replay",
    "summarise",
]
