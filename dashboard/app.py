"""The sftune dashboard, a Streamlit app: layout only, over the tested functions of `dashboard`.

Launch with ``sftune dashboard`` (which binds 127.0.0.1 and keeps XSRF and CORS protection on).
The sidebar picks the storage path, the sweep and the page; the page body re-reads the results
every few seconds while the selected sweep runs, unless live refresh is switched off.
"""

from __future__ import annotations

import logging

import streamlit as st

from dashboard import cached, loaders
from dashboard.settings import Settings
from dashboard.views import PAGES, Context, Page
from search.results import sweep_name

log = logging.getLogger("sftune.dashboard")


def _index(options: list[str], wanted: str | None) -> int:
    return options.index(wanted) if wanted in options else 0


def _sidebar(settings: Settings) -> tuple[Context, Page, bool]:
    """Storage path, sweep and page pickers; the URL's ``?page=&sweep=`` give the defaults."""
    bar = st.sidebar
    bar.title("sftune")
    storage = bar.text_input("Storage path", settings.storage, key="storage").strip()
    ctx = Context(settings=settings, storage=storage, sweeps=cached.sweep_paths(storage))
    names = [sweep_name(p) for p in ctx.sweeps]
    if names:
        name = bar.selectbox("Sweep", names, key="sweep",
                             index=_index(names, st.query_params.get("sweep")))
        ctx.selected = ctx.sweeps[names.index(name)]
        st.query_params["sweep"] = name
    slugs = [p.slug for p in PAGES]
    page = PAGES[slugs.index(bar.radio(
        "Page", slugs, key="page", index=_index(slugs, st.query_params.get("page")),
        format_func=lambda slug: PAGES[slugs.index(slug)].title))]
    st.query_params["page"] = page.slug
    live = bar.toggle("Live refresh", value=True, key="live",
                      help=f"Re-read the results every {settings.refresh_s:g} s while the "
                      "sweep runs.")
    return ctx, page, live


def _running(ctx: Context, page: Page) -> bool:
    """Whether what the page shows can still change: its sweep (any sweep, on Sweeps) runs."""
    paths = ctx.sweeps if page.slug == "sweeps" else [ctx.selected] if ctx.selected else []
    return any(loaders.is_running(cached.quick_meta(p)) for p in paths)


def _render(page: Page, ctx: Context, live: bool) -> None:
    try:
        page.render(ctx)
    except Exception as err:  # the page must explain itself, never print a traceback
        log.exception("page %s failed", page.slug)
        st.error(f"This page hit an unexpected problem ({type(err).__name__}: {err}). "
                 "The details are in the dashboard's log.")
    if live and not _running(ctx, page):
        st.rerun(scope="app")  # the sweep ended: a full run turns the timer off


def main() -> None:
    st.set_page_config(page_title="sftune dashboard", layout="wide")
    settings = Settings.from_env()
    ctx, page, live = _sidebar(settings)
    refresh = live and page.live and _running(ctx, page)
    st.sidebar.caption(f"Live: re-reading every {settings.refresh_s:g} s." if refresh else
                       "Nothing running to follow." if live else "Live refresh is off.")
    body = st.fragment(_render, run_every=settings.refresh_s if refresh else None)
    body(page, ctx, refresh)


main()
