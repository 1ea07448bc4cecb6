"""The Streamlit app driven by AppTest: every page, the trial table, the empty and error states,
and the query box against a fake endpoint."""

from __future__ import annotations

import os

import pytest

from search.results import results_dir, write_trials
from tests.dashboard import builders

PAGES = {"sweeps": "Sweeps", "overview": "Sweep tiny", "hyperparameters": "Hyperparameters of tiny",
         "curves": "Learning curves of tiny", "classes": "Per class: tiny", "try": "Try the model"}


def _texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_renders_without_exception_or_error(open_app, storage, page, endpoint):
    at = open_app(storage, page=page, serve_url=endpoint.url)
    assert at.title[0].value == PAGES[page]
    assert not at.error, _texts(at.error)
    if page in ("hyperparameters", "curves", "classes"):
        assert at.get("plotly_chart"), "the page draws its figure"


def test_trial_table_has_one_row_per_trial_and_filters(open_app, storage):
    at = open_app(storage, page="overview")
    table = at.dataframe[0].value
    assert list(table["trial_id"]) == builders.TINY_TRIALS
    assert [m.value for m in at.metric][:5] == ["5 / 5", "1", "0", "2", "2"]
    assert "Best trial: t_best" in _texts(at.subheader)
    at.multiselect(key="outcome_filter").set_value(["error", "diverged"]).run()
    assert list(at.dataframe[0].value["trial_id"]) == ["t_diverged", "t_error"]
    at.text_input(key="trial_search").input("memoryerror").run()
    assert list(at.dataframe[0].value["trial_id"]) == ["t_error"]
    assert "Showing 1 of 5 trials" in _texts(at.caption)


def test_sweeps_page_lists_every_sweep_flags_the_corrupt_one_and_compares(open_app, storage):
    at = open_app(storage)
    listing = at.dataframe[0].value
    assert set(listing["name"]) == {"tiny", "live", "just-started", "broken"}
    assert "Sweep **broken** cannot be read" in _texts(at.warning)
    at.selectbox(key="compare_a").set_value("tiny")
    at.selectbox(key="compare_b").set_value("live").run()
    compared = at.dataframe[1].value
    assert list(compared.columns) == ["tiny", "live"]
    assert compared.loc["running", "live"] == "1"


def test_no_sweeps_yet_says_so(open_app, tmp_path):
    for page in ("sweeps", "overview", "hyperparameters"):
        at = open_app(tmp_path, page=page)
        assert "No sweeps yet under" in _texts(at.info)


def test_running_sweep_without_results_says_so_and_refreshes(open_app, storage):
    at = open_app(storage, page="overview", sweep="just-started")
    assert "is running; no trial has reported an epoch yet" in _texts(at.info)
    assert "Live: re-reading every 5 s" in _texts(at.sidebar.caption)
    at.sidebar.toggle(key="live").set_value(False).run()
    assert "Live refresh is off" in _texts(at.sidebar.caption)


def test_finished_sweep_is_not_refreshed(open_app, storage):
    at = open_app(storage, page="curves", sweep="tiny")
    assert "Nothing running to follow" in _texts(at.sidebar.caption)


def test_corrupt_results_are_an_error_message_not_a_traceback(open_app, storage):
    for page in ("overview", "hyperparameters", "curves"):
        at = open_app(storage, page=page, sweep="broken")
        assert "cannot be read" in _texts(at.error) and "corrupt or partial" in _texts(at.error)


def test_query_box_shows_the_label_probabilities_and_the_trial(open_app, storage, endpoint):
    at = open_app(storage, page="try", serve_url=endpoint.url)
    assert "trial **trial_fake_7**" in _texts(at.success)
    at.text_input(key="query_text").input("a great film").run()
    at.button(key="predict_one").click().run()
    assert not at.error, _texts(at.error)
    assert at.metric[0].value == "pos" and "trial_fake_7" in at.metric[0].label
    assert at.get("plotly_chart"), "probabilities are drawn"
    at.text_area(key="query_batch").input("dull\nso much fun\n\nboring plot").run()
    at.button(key="predict_batch").click().run()
    answers = at.dataframe[0].value
    assert list(answers["text"]) == ["dull", "so much fun", "boring plot"]
    assert list(answers["label"]) == ["neg", "pos", "neg"]
    assert {"p(neg)", "p(pos)"} <= set(answers.columns)


def test_endpoint_down_says_so_and_offers_no_model_when_none_is_exported(open_app, storage):
    at = open_app(storage, page="try", sweep="tiny")
    assert "No model endpoint is up" in _texts(at.warning)
    assert "No exported model to load either" in _texts(at.info)
    assert "query_text" not in [w.key for w in at.text_input]  # nothing to ask


def test_endpoint_that_needs_a_key_asks_for_one(open_app, storage, locked_endpoint):
    at = open_app(storage, page="try", serve_url=locked_endpoint.url)
    assert "needs an API key" in _texts(at.error) and "no `--api-key-env`" in _texts(at.error)
    at.text_input(key="pasted_api_key").input("s3cret").run()
    assert "trial **trial_fake_7**" in _texts(at.success)
    at = open_app(storage, page="try", serve_url=locked_endpoint.url,
                  SFTUNE_DASHBOARD_API_KEY_ENV="TEST_SERVE_KEY", TEST_SERVE_KEY="s3cret")
    assert not at.error and "trial **trial_fake_7**" in _texts(at.success)
    assert ("GET", "/model", None) in locked_endpoint.requests


def test_new_results_of_a_running_sweep_show_on_the_next_run(open_app, tmp_path):
    path = builders.write_running(tmp_path)
    at = open_app(tmp_path, page="overview", sweep="live")
    assert list(at.dataframe[0].value["trial_id"]) == ["t_best", "t_patience"]
    rows = builders.tiny_rows()
    os.utime(results_dir(path) / "trials.parquet", ns=(1, 1))  # the rewrite gets a new mtime
    write_trials(path, rows[rows["trial_id"] != "t_error"])
    at.run()  # what the live refresh does every few seconds
    assert len(at.dataframe[0].value) == 4 and at.metric[3].value == "2"


def test_the_app_reads_its_sweeps_from_a_bucket(open_app, storage, bucket):
    from search import storage as store

    remote = store.join(bucket, "sweeps")
    store.upload_dir(storage, remote)
    at = open_app(remote, page="overview", sweep="tiny")
    assert list(at.dataframe[0].value["trial_id"]) == builders.TINY_TRIALS
    assert "Best trial: t_best" in _texts(at.subheader)
    listing = open_app(remote).dataframe[0].value
    assert set(listing["name"]) == {"tiny", "live", "just-started", "broken"}


def test_overview_says_when_the_best_trials_sit_at_the_edge_of_a_range(open_app, tmp_path,
                                                                       storage):
    builders.write_edge(tmp_path)
    at = open_app(tmp_path, page="overview")
    [warning] = at.warning
    assert "edge of a searched range" in warning.value
    assert "lr: the best trial's 0.00029 sits at the high end" in warning.value
    assert "sftune sweep --warm-start edge --set 'space.lr=" in warning.value
    assert not open_app(storage, page="overview").warning  # tiny's best lr is mid-range


def test_overview_shows_the_finalists_with_their_spread_ranked_by_mean(open_app, tmp_path):
    builders.write_finalists(tmp_path)
    at = open_app(tmp_path, page="overview", sweep="finals")
    assert "Finalists" in _texts(at.header)
    table = at.dataframe[0].value  # above the trial table
    assert list(table["trial_id"]) == ["t_patience", "t_best"]  # by mean, not search score
    assert list(table["reproducible"]) == [True, False]
    assert table["mean"].tolist() == pytest.approx([(0.75 + 0.76 + 0.74) / 3,
                                                    (0.84 + 0.60 + 0.60) / 3])
    assert list(table["seeds"]) == ["1, 2", "1, 2"]


def test_overview_shows_the_lineage_of_a_retuned_sweep(open_app, tmp_path):
    builders.write_tiny(tmp_path)
    builders.write_retuned(tmp_path)
    at = open_app(tmp_path, page="overview", sweep="retuned")
    [lineage] = [i.value for i in at.info if "Lineage" in i.value]
    assert "warm-started from tiny: its top 2 configurations evaluated first, 1 outside this " \
           "space (changed: data (fingerprint))" in lineage
    assert "re-tune of tiny: promoted to http://127.0.0.1:8000" in lineage
    assert "on 150 of 200 test rows" in lineage
    scores = at.dataframe[0].value  # the comparison comes first, above the trial table
    assert list(scores["model"]) == ["served", "candidate"]
    assert list(scores["accuracy"]) == [0.81, 0.85]
    plain = open_app(tmp_path, page="overview", sweep="tiny")  # no lineage: nothing shown
    assert not [i for i in plain.info if "Lineage" in i.value]


def test_per_class_page_shows_where_the_best_trial_fails_and_how_two_trials_differ(
    open_app, storage
):
    at = open_app(storage, page="classes")
    assert at.selectbox(key="class_trial").value == "t_best"  # the best trial by default
    # The frames, in page order: validation, test, the difference between two trials.
    validation = at.dataframe[0].value
    # t_best peaked at 0.84 on 100 examples; all 16 errors are "pos" called "neg".
    assert list(validation.index) == ["neg", "pos"]
    assert validation.loc["pos", "recall"] == pytest.approx(0.68)
    assert validation.loc["neg", "recall"] == 1.0 and validation["support"].sum() == 100
    test = at.dataframe[1].value  # as `sftune best` measured it
    assert test.loc["pos", "recall"] == pytest.approx(0.62)
    assert len(at.get("plotly_chart")) == 2  # a confusion matrix per split
    at.selectbox(key="class_other").set_value("t_patience").run()  # best epoch 0.75
    difference = at.dataframe[2].value
    assert difference.loc["pos", "recall"] == pytest.approx(0.68 - 0.50)
    assert difference.loc["neg", "recall"] == 0.0
    # A trial that was never tested has no test section.
    at.selectbox(key="class_trial").set_value("t_patience").run()
    assert not at.error and "Test: t_patience" not in _texts(at.subheader)
