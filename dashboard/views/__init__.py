"""The dashboard's pages; each module renders one page from a :class:`~.common.Context`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dashboard.views import classes, curves, hyperparams, overview, sweeps, try_model
from dashboard.views.common import Context

__all__ = ["PAGES", "Context", "Page"]


@dataclass(frozen=True)
class Page:
    """A page: its title, its slug in the URL (``?page=``) and whether it follows a live sweep."""

    title: str
    slug: str
    render: Callable[[Context], None]
    live: bool = True


PAGES = (
    Page("Sweeps", "sweeps", sweeps.render),
    Page("Sweep overview", "overview", overview.render),
    Page("Hyperparameters", "hyperparameters", hyperparams.render),
    Page("Learning curves", "curves", curves.render),
    Page("Per class", "classes", classes.render),
    # Not live: a refresh would wipe the answer the user is reading.
    Page("Try the model", "try", try_model.render, live=False),
)
