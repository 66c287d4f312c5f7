"""--build-runner thread: the recipe runs on a thread of the serving process,
as every build did before the runners. It shares the replica's memory and
fate (an out-of-memory build takes the replica down), so it is only chosen
for the whole daemon, never per upload: for comparisons and small data sets."""
from __future__ import annotations

from .outcome import BuildOutput, run_recipe
from .request import BuildRequest


class ThreadRunner:
    def run(self, request: BuildRequest) -> BuildOutput:
        # The job's progress raises BuildCancelled at the recipe's next stage or count after a cancel.
        return run_recipe(request.task, request.progress)
