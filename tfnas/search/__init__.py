"""Architecture search: `SearchConfig` (plain values), `Search` (the loop) and the command
`python -m tfnas.search` (`tfnas/search/__main__.py`)."""

from tfnas.search.config import SearchConfig
from tfnas.run.rundir import Interrupted, StopOnSignal
from tfnas.search.loop import Search

__all__ = ["Interrupted", "Search", "SearchConfig", "StopOnSignal"]
