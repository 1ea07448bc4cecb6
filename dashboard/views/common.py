"""What every page shares: the context the sidebar resolves, and the empty and error states."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from dashboard import cached, loaders
from dashboard.settings import Settings
from search.results import ResultsError, sweep_name

__all__ = ["Context", "load_selected", "no_scored_trials", "show_empty_sweep"]


@dataclass
class Context:
    """What the sidebar resolved for this run of the app."""

    settings: Settings
    storage: str
    sweeps: list[str] = field(default_factory=list)  # directories or bucket URIs
    selected: str | None = None

    @property
    def refresh_note(self) -> str:
        return f"refreshes every {self.settings.refresh_s:g} s while it runs"


def _no_sweeps(ctx: Context) -> None:
    st.info(f"No sweeps yet under `{ctx.storage}`. Start one with "
            "`sftune sweep --name NAME`, or point the sidebar's storage path at another "
            "directory.")


def load_selected(ctx: Context) -> loaders.Sweep | None:
    """The selected sweep, or None after telling the user why there is none to show."""
    if ctx.selected is None:
        _no_sweeps(ctx)
        return None
    try:
        return cached.sweep(ctx.selected)
    except ResultsError as err:
        st.error(f"The results of sweep **{sweep_name(ctx.selected)}** cannot be read: {err}\n\n"
                 "sftune replaces results files atomically, so this one was damaged or written "
                 "by another tool. Other sweeps are unaffected.")
        return None


def show_empty_sweep(sweep: loaders.Sweep, ctx: Context) -> bool:
    """Say so when the sweep has no trial yet; True when there was nothing to show."""
    if len(sweep.table):
        return False
    if loaders.is_running(sweep.meta):
        st.info(f"Sweep **{sweep.name}** is running; no trial has reported an epoch yet. "
                f"This page {ctx.refresh_note}.")
    else:
        st.info(f"Sweep **{sweep.name}** ({sweep.meta.get('status', 'unknown')}) has no trial "
                "results.")
    return True


def open_scored_sweep(ctx: Context, title: str) -> loaders.Sweep | None:
    """The selected sweep under a page title (``{name}`` is filled in), or None when there is
    nothing to show yet (no sweep, no results, no trial with a finished evaluation): the page
    has said so."""
    sweep = load_selected(ctx)
    if sweep is None:
        return None
    st.title(title.format(name=sweep.name))
    if show_empty_sweep(sweep, ctx) or no_scored_trials(sweep):
        return None
    return sweep


def no_scored_trials(sweep: loaders.Sweep) -> bool:
    """Say so when no trial finished an epoch (all errored, or all still in epoch 1)."""
    if sweep.table["score"].notna().any():
        return False
    st.info(f"No trial of **{sweep.name}** has finished an epoch yet, so there is no metric "
            "to plot.")
    return True
