"""The one typed configuration of sftune.

Every entry point (``sftune train``, ``sftune sweep``, ``sftune serve``, the dashboard) reads an
:class:`AppConfig`. It is built from a YAML file plus dotted ``--set a.b=value`` overrides and is
validated when it is built, so a typo fails before any model is loaded. This module imports no
torch and no ray: it is the ground floor every other module may stand on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

__all__ = [
    "BUILTIN_CONFIGS",
    "AppConfig",
    "ConfigError",
    "DataConfig",
    "DashboardConfig",
    "Choice",
    "ModelConfig",
    "Range",
    "ServeConfig",
    "SpaceConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrialParams",
    "TuneConfig",
    "build_config",
    "builtin_configs",
    "is_point",
    "load_config",
    "parse_overrides",
    "resolve_config_path",
    "with_overrides",
]

#: The sweep's searched dimensions, in the order they are shown everywhere.
CORE_DIMENSIONS = ("alpha", "lr", "frozen_depth", "weight_decay", "dropout")
#: Dimensions that are fixed unless a config opts in to searching them.
EXTRA_DIMENSIONS = ("warmup_ratio", "batch_size", "joint_epochs")
INT_DIMENSIONS = ("frozen_depth", "batch_size", "joint_epochs")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and what is allowed."""


class _Section(BaseModel):
    # extra="forbid" is what turns a typo such as `trian.epochs` into an error naming the key.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the labelled examples come from and how they are split and tokenized."""

    source: str = Field(
        "rotten_tomatoes",
        description="Built-in name (`rotten_tomatoes`, `rotten_tomatoes_small`), a path to a "
        ".csv, .tsv, .jsonl, .json (lines or an array) or .parquet file, split by sftune, or a "
        "directory saved by `datasets`' save_to_disk (`pip install 'sftune[datasets]'`): a "
        "DatasetDict with train, validation and test splits is used as given, a Dataset is split.",
    )
    train: str | None = Field(
        None, description="Your own training file, with data.validation and data.test: the "
        "splits are used as given (no split is made, data.source is not read) and the data "
        "fingerprint covers all three.",
    )
    validation: str | None = Field(None, description="Your own validation file (see data.train).")
    test: str | None = Field(None, description="Your own test file (see data.train).")
    text_column: str = Field("text", description="Column holding the input text (user files).")
    label_column: str = Field("label", description="Column holding the class label (user files).")
    text_pair_column: str | None = Field(
        None, description="Second text column, for text pairs (NLI, paraphrase, query-document): "
        "each row is encoded as one pair, joined as the model's tokenizer joins two texts (its "
        "separator and, where the model has them, segment ids); a pair longer than max_length "
        "is cut longest-first. The export takes {text, text_pair} in `pipeline()` and the "
        "endpoint. None: single texts.",
    )
    unlabeled_path: str | None = Field(
        None, description="Optional text file, one document per line, for the masked-LM loss."
    )
    max_length: int | None = Field(
        None, ge=8, le=4096, description="Tokens per example after truncation. None: the 95th "
        "percentile of the training texts' token lengths, capped by the model's limit.",
    )
    truncation: Literal["head", "head_tail"] = Field(
        "head", description="How a text longer than max_length is cut: `head` keeps its start; "
        "`head_tail` keeps its first quarter and its last three quarters of the budget (Sun et "
        "al. 2019 found head+tail best for long documents).",
    )
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of rows held for validation.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of rows held out for test.")
    max_train_examples: int | None = Field(
        None, ge=2, description="Stratified subsample of the training split (None = all)."
    )
    max_eval_examples: int | None = Field(
        None, ge=2, description="Stratified subsample of validation and test (None = all)."
    )
    split_seed: int = Field(0, description="Seed of the stratified split; fixed so runs compare.")

    @model_validator(mode="after")
    def _check_given_splits(self) -> DataConfig:
        given = {name: getattr(self, name) for name in ("train", "validation", "test")}
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(f"data.{name}" for name, path in given.items() if not path)
            raise ValueError(f"your own splits need all three files; {missing} not set")
        return self

    @model_validator(mode="after")
    def _check_pairs(self) -> DataConfig:
        if self.text_pair_column and self.truncation != "head":
            raise ValueError("data.truncation applies to single texts; text pairs "
                             "(data.text_pair_column) are cut longest-first")
        return self

    def given_splits(self) -> dict[str, str] | None:
        """The user's own train/validation/test files, or None when sftune splits data.source."""
        return {"train": self.train, "validation": self.validation, "test": self.test} \
            if self.train else None


class ModelConfig(_Section):
    """The pretrained encoder to fine-tune."""

    name: str = Field(
        "minilm",
        description="Built-in name `minilm` (packaged all-MiniLM-L6-v2); a local directory or "
        "bucket URI holding a checkpoint in safetensors of any encoder transformers' Auto "
        "classes load for sequence classification (BERT, DistilBERT, RoBERTa, ELECTRA, "
        "DeBERTa-v2, ModernBERT, ...); or a Hugging Face Hub id already in this machine's "
        "Hugging Face cache (no download).",
    )


def _on_off(value: Any) -> Any:
    # YAML 1.1 reads a bare on/off as a boolean; here the user meant the word.
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class TrainConfig(_Section):
    """Static settings of one trial. The searched values live in :class:`TrialParams`."""

    epochs: int = Field(2, ge=1, le=1000, description="Total epochs, joint plus task-only.")
    batch_size: int = Field(32, ge=1, description="Training examples per step.")
    eval_batch_size: int = Field(128, ge=1, description="Examples per validation forward pass.")
    max_batch_tokens: int | None = Field(
        8192, ge=8, description="Most padded tokens (rows x longest row) one forward pass "
        "holds. A training batch of long texts over it runs as micro-batches whose gradients "
        "add up to the whole batch's (same batch_size, same update); evaluation batches hold "
        "fewer rows. Bounds a trial's memory on long texts (at 512 tokens, 16 rows). None: no "
        "cap (a GPU with memory to spare).",
    )
    oom_retries: int = Field(
        2, ge=0, description="Times a step that runs out of memory (CPU or GPU) is retried with "
        "half the tokens per forward pass (micro-batches accumulating to the same batch) before "
        "the trial fails as out_of_memory.",
    )
    group_by_length: bool = Field(
        True, description="Shuffle so each training batch holds texts of similar length "
        "(windows of 50 batches sorted by length): less padding, same examples per epoch."
    )
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps in linear warm-up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient-norm clipping threshold.")
    eval_every: int | None = Field(
        None, ge=1, description="Training examples between validation evaluations (None = once "
        "per epoch). Each evaluation is a report to Tune, an ASHA rung candidate and a possible "
        "best checkpoint, so a poor trial can be cut before its first epoch ends.",
    )
    time_limit_s: float | None = Field(
        None, gt=0, description="Wall-clock limit of one training run, in seconds. The lr "
        "schedule follows whichever runs out first, the steps or this time, so training still "
        "ends with its lr decayed to zero.",
    )
    patience: int = Field(
        3, ge=1, description="Evaluations without improvement before stopping."
    )
    head_init: Literal["probe", "random"] = Field(
        "probe", description="How the classifier head starts: `probe` fits it as a logistic "
        "regression on the pretrained encoder's features first (LP-FT), so fine-tuning starts "
        "from the probe's accuracy rather than chance; `random` is the stock fresh head.",
    )
    probe_examples: int = Field(
        1024, ge=1, description="Training texts (a stratified sample) the head probe is fit on.",
    )
    lexical: Annotated[Literal["auto", "off"], BeforeValidator(_on_off)] = Field(
        "auto", description="`auto`: when the model is exported, a TF-IDF + linear-SVM "
        "layer is fit on the training texts and pooled with the model at the words' share that "
        "scores best on validation: 0 keeps the transformer alone, 0.2-0.9 add the words' "
        "log-probabilities to the model's (at 0.25-9 times), 1 is the words alone "
        "(search/lexical.py). `off`: never.",
    )
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked for L_lm.")
    metric: Literal["val_accuracy", "val_f1_macro", "val_f1_worst"] = Field(
        "val_accuracy", description="Validation metric that picks the best epoch and trial: "
        "accuracy, macro-F1, or the worst class's F1 (for a model that must not fail any class)."
    )
    seed: int = Field(0, description="Seed for weights of new heads, shuffling and masking.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` uses CUDA when present, else CPU."
    )
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    num_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (None = torch's default)."
    )
    prefix_cache: Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)] = Field(
        "auto", description="Reuse frozen-layer activations across epochs (see README)."
    )
    prefix_cache_budget_mb: int = Field(
        2048, ge=0, description="Largest frozen-prefix cache a trial may build, in MiB."
    )


class Range(_Section):
    """A searched numeric dimension: uniform (or log-uniform) between low and high."""

    low: float
    high: float
    log: bool = Field(False, description="Sample log-uniformly; both bounds must be > 0.")
    default: float | None = Field(
        None, description="Value used by `sftune train`; default is the (geometric) midpoint."
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be < high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        if self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"default {self.default} is outside [{self.low}, {self.high}]")
        return self

    def midpoint(self) -> float:
        if self.default is not None:
            return self.default
        if self.log:
            return math.sqrt(self.low * self.high)
        return (self.low + self.high) / 2


class Choice(_Section):
    """A searched categorical dimension."""

    choices: list[float] = Field(min_length=1)
    default: float | None = None

    def midpoint(self) -> float:
        return self.default if self.default is not None else self.choices[0]


def _parse_dimension(value: Any) -> float | Range | Choice:
    """A dimension is a constant, ``{low, high[, log, default]}`` or ``{choices[, default]}``."""
    if isinstance(value, Range | Choice):
        return value
    if isinstance(value, dict):
        kind = Choice if "choices" in value else Range
        try:
            return kind.model_validate(value)
        except ValidationError as err:
            # Re-raised as ValueError so the error is reported at the dimension's own key.
            raise ValueError("; ".join(_describe(e, kind) for e in err.errors())) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"got {value!r}; allowed: a number, {{low, high, log, default}} or {{choices: [...]}}"
        )
    return float(value)


def _describe(item: dict[str, Any], kind: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in item["loc"])
    if item["type"] == "extra_forbidden":
        return f"unknown key {key!r}; allowed: {', '.join(kind.model_fields)}"
    msg = item["msg"].removeprefix("Value error, ")
    return f"{key}: {msg}" if key else msg


Dimension = Annotated[float | Range | Choice, BeforeValidator(_parse_dimension)]


class SpaceConfig(_Section):
    """The search space. Each dimension is a constant or a `{low, high, log}` / `{choices}`."""

    alpha: Dimension = Field(
        Range(low=30.0, high=3000.0, log=True, default=300.0),
        description="Task-loss weight in L = L_lm + alpha * L_task during joint epochs.",
    )
    lr: Dimension = Field(
        Range(low=6e-5, high=2.5e-4, log=True, default=1e-4),
        description="Peak AdamW learning rate.",
    )
    frozen_depth: Dimension = Field(
        Range(low=0, high=2, default=0), description="Bottom encoder layers kept frozen (0..N)."
    )
    weight_decay: Dimension = Field(
        Range(low=0.0, high=0.1, default=0.01), description="Decoupled AdamW weight decay."
    )
    dropout: Dimension = Field(
        Range(low=0.0, high=0.2, default=0.1), description="Hidden, attention and head dropout."
    )
    warmup_ratio: Dimension | None = Field(None, description="Optional; else train.warmup_ratio.")
    batch_size: Dimension | None = Field(None, description="Optional; else train.batch_size.")
    joint_epochs: Dimension = Field(
        Choice(choices=[0, 1], default=0),
        description="Epochs of stage 1 (joint LM + task loss); 0 switches the LM term off.",
    )

    @model_validator(mode="after")
    def _check_ints(self) -> SpaceConfig:
        for name in INT_DIMENSIONS:
            dim = getattr(self, name)
            if dim is not None and any(v < 0 for v in _dimension_values(dim)):
                raise ValueError(f"space.{name} must be >= 0")
        return self

    def searched(self) -> dict[str, Range | Choice]:
        """The dimensions that are searched, not fixed."""
        dims = {n: getattr(self, n) for n in CORE_DIMENSIONS + EXTRA_DIMENSIONS}
        return {n: d for n, d in dims.items() if isinstance(d, Range | Choice)}


def _dimension_values(dim: float | Range | Choice) -> list[float]:
    if isinstance(dim, Range):
        return [dim.low, dim.high]
    if isinstance(dim, Choice):
        return list(dim.choices)
    return [dim]


class TuneConfig(_Section):
    """How the sweep runs on Ray Tune."""

    num_samples: int = Field(8, ge=1, description="Trials in the sweep.")
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    time_budget_s: float | None = Field(
        None, gt=0, description="Wall-clock budget of the whole sweep, search plus final "
        "trial, in seconds. The search stops launching trials at its share (search_fraction; "
        "running trials finish, stragglers past 1.25x the share are stopped); the final "
        "trial's lr schedule is fitted to what is left.",
    )
    search_examples: int | None = Field(
        None, ge=2, description="Training examples a search trial sees: a stratified subset, "
        "one pass. The best configuration is then trained once more on all the training data "
        "for train.epochs (the final trial), and that model is exported. None: search trials "
        "train on all the data for train.epochs and the best one is exported as is.",
    )
    search_eval_examples: int | None = Field(
        None, ge=2, description="Validation examples search trials are scored on (a stratified "
        "subset; None = all). The final trial is scored on the whole validation split.",
    )
    min_improvement: float = Field(
        0.01, ge=0, description="How much a search trial must beat the untuned default's "
        "validation score by to replace it in the final trial. The search's validation subset "
        "is small and its fidelity low, so a smaller lead is as likely noise as signal.",
    )
    search_fraction: float = Field(
        0.4, gt=0, lt=1, description="Share of time_budget_s given to the search when a final "
        "trial follows it.",
    )
    finalists: int = Field(
        3, ge=0, description="After the search, the top this many configurations are trained "
        "again with tune.finalist_seeds more seeds (at the search's fidelity, inside the "
        "budget), and the one with the best seed-mean is the model: the final trial trains it, "
        "or, without tune.search_examples, its search run is exported (then at most "
        "tune.keep_checkpoints finalists); 0: the best search score alone decides.",
    )
    finalist_seeds: int = Field(
        2, ge=1, description="Extra seeds (train.seed + 1, + 2, ...) each finalist is re-run "
        "with; its score is the mean over them and its search run.",
    )
    finalist_choice: Literal["mean", "lcb"] = Field(
        "mean", description="How finalists are ranked: `mean` of their runs, or `lcb`, a lower "
        "confidence bound (mean minus one standard deviation), which prefers steady ones.",
    )
    reproducibility_margin: float = Field(
        0.02, ge=0, description="A finalist whose new seeds' mean falls more than this below "
        "its search score is flagged not reproducible (a lucky draw).",
    )
    warm_start: str | None = Field(
        None, description="An earlier sweep (a name under storage_path, a directory or a "
        "bucket URI) to start from (`sftune sweep --warm-start OLD`). Same data and fidelity: "
        "its trials become the search's history (not run again; the best may win). Changed "
        "data: its top tune.warm_start_top configurations are evaluated first, as a prior.",
    )
    warm_start_top: int = Field(
        3, ge=0, description="Configurations of the tune.warm_start sweep evaluated first when "
        "its data or fidelity differ from this sweep's.",
    )
    promotion_margin: float = Field(
        0.01, description="`sftune retune`: the new model replaces the served one only if it "
        "beats it by this much on the new test split (rows neither model trained on), in "
        "train.metric's test counterpart (accuracy, macro-F1 or worst-class F1).",
    )
    storage_path: str = Field(
        "runs", description="Local dir (default) or s3:// / gs:// / NFS URI shared by all nodes."
    )
    grace_period: int | None = Field(
        None, ge=1, description="ASHA: training examples every trial sees before it can be "
        "stopped (None = one evaluation interval: train.eval_every, else one epoch).",
    )
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: keep 1/factor at each rung.")
    max_failures: int = Field(0, ge=-1, description="Retries of a raising trial (-1 = forever).")
    keep_checkpoints: int = Field(3, ge=1, description="Trials that keep checkpoints at the end.")
    seed: int = Field(0, description="Seed of the Optuna TPE sampler.")
    cpus_per_trial: float = Field(1.0, gt=0, description="Ray CPUs reserved by each trial.")
    gpus_per_trial: float = Field(0.0, ge=0, description="Ray GPUs per trial; fractions allowed.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (None = all).")
    optuna_db: bool = Field(True, description="Also write an Optuna sqlite study.")


class ServeConfig(_Section):
    """The Ray Serve endpoint: where it binds, how it batches, what it accepts."""

    host: str = Field("127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the Serve proxy.")
    replicas: int | None = Field(
        None, ge=1, description="Fixed replica count when not autoscaling. None: enough to fill "
        "one GPU (1 / gpus_per_replica) with GPUs; on CPU 2 where the machine has 2+ cores, each "
        "with half the threads, so one's request handling overlaps the other's forward "
        "(BENCHMARKS.md, serving).",
    )
    cpus_per_replica: float = Field(
        1.0, gt=0, description="Ray CPUs reserved per replica (logical; threads: num_threads)."
    )
    gpus_per_replica: float = Field(0.0, ge=0, description="Ray GPUs per replica; fractions ok.")
    autoscaling: bool = Field(
        False, description="Scale replicas between min_replicas and max_replicas on load."
    )
    min_replicas: int = Field(1, ge=0, description="Autoscaling lower bound.")
    max_replicas: int = Field(4, ge=1, description="Autoscaling upper bound.")
    target_ongoing_requests: float = Field(
        32.0, gt=0, description="Autoscaling target of in-flight requests per replica."
    )
    api_key_env: str | None = Field(
        None, description="Env var holding the bearer key; when set every endpoint but /healthz "
        "requires `Authorization: Bearer <key>`.",
    )
    max_batch_size: int = Field(
        64, ge=1, le=4096, description="Most texts merged into one model batch by @serve.batch."
    )
    batch_wait_timeout_s: float = Field(
        0.03, ge=0, le=10,
        description="Longest a batch waits for more requests, in seconds, while several are in "
        "flight (a lone request runs at once); how it was chosen: BENCHMARKS.md, serving.",
    )
    max_ongoing_requests: int = Field(
        64, ge=1,
        description="Requests in flight per replica; must be >= max_batch_size or batches "
        "never fill (Serve's default of 5 would cap every batch at 5).",
    )
    forward_batch_size: int | None = Field(
        None, ge=1, description="Texts per forward pass inside a merged batch, sorted by length "
        "so padding stays small (None = 8 on CPU, the whole batch on GPU).",
    )
    max_texts: int = Field(64, ge=1, description="Most texts one request may carry.")
    max_chars: int = Field(5000, ge=1, description="Most characters in one text.")
    max_tokens: int | None = Field(
        None, ge=8, description="Tokens per text after truncation (None = the length the model "
        "was trained and tested at, from its sftune.json, so answers are what the test scored; "
        "the model's limit, at most 512, for a checkpoint without one).",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body; bigger ones get 413."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="End-to-end limit of one request; Serve answers 408 after it."
    )
    num_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per replica (None = the machine's cores "
        "divided among replicas).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` uses CUDA when the replica sees a GPU, else CPU."
    )
    bf16: bool = Field(True, description="Run in bfloat16 on CUDA (ignored on CPU).")
    app_name: str = Field(
        "sftune", description="Serve application name; serving again under it updates in place."
    )
    ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy", description="HTTP front of a Ray that sftune starts. `haproxy` (default where "
        "`ray[serve]` installed its binary, i.e. Linux): Serve's HAProxy sends requests straight "
        "to the replicas' own HTTP servers (less CPU per request than `proxy`; BENCHMARKS.md); "
        "sftune keeps its stats and metrics pages on 127.0.0.1 and its admin socket in a 0700 dir. "
        "`proxy`: Serve's Python proxy, the fallback elsewhere.",
    )

    @model_validator(mode="after")
    def _check_batching(self) -> ServeConfig:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"serve.max_ongoing_requests ({self.max_ongoing_requests}) must be >= "
                f"serve.max_batch_size ({self.max_batch_size}), or batches never fill; "
                "raise max_ongoing_requests or lower max_batch_size"
            )
        if self.max_texts > self.max_batch_size:
            raise ValueError(
                f"serve.max_texts ({self.max_texts}) must be <= serve.max_batch_size "
                f"({self.max_batch_size}): one request must fit in one batch"
            )
        if self.autoscaling and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"serve.min_replicas ({self.min_replicas}) must be <= serve.max_replicas "
                f"({self.max_replicas})"
            )
        return self


class DashboardConfig(_Section):
    """The Streamlit dashboard (`sftune dashboard`); its flags override these."""

    host: str = Field(
        "127.0.0.1", description="Bind address; loopback unless told otherwise (it has no auth)."
    )
    port: int = Field(8501, ge=1, le=65535, description="TCP port Streamlit listens on.")
    serve_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL of the Serve endpoint for `Try the model`."
    )
    api_key_env: str | None = Field(
        None, description="Env var holding the endpoint's bearer key (None = serve.api_key_env)."
    )
    refresh_s: float = Field(
        5.0, ge=1, le=3600, description="Seconds between live refreshes while a sweep runs."
    )


class TrackingConfig(_Section):
    """Where a sweep's trials are logged besides sftune's own results (TensorBoard files are
    always written by Tune)."""

    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI (`sqlite:///path/mlflow.db`, `http://host:5000`, "
        "`databricks`) or a local file path (an SQLite store there); every trial becomes a run "
        "with its params and per-evaluation metrics. Needs `pip install 'sftune[mlflow]'`. "
        "None: off.",
    )
    mlflow_experiment: str | None = Field(
        None, description="MLflow experiment name (None: the sweep's name)."
    )
    wandb_project: str | None = Field(
        None, description="W&B project; every trial becomes a run in the group named after the "
        "sweep. Needs `pip install 'sftune[wandb]'`. None: off.",
    )
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="`offline` writes runs to wandb_dir for a later `wandb sync` "
        "(no network, no API key); `online` uploads (needs WANDB_API_KEY or `wandb login`).",
    )
    wandb_dir: str | None = Field(
        None, description="Directory of W&B's run files (None: ./wandb where sftune runs)."
    )


class AppConfig(_Section):
    """Everything sftune needs, one section per concern."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _check_epochs(self) -> AppConfig:
        for joint in _dimension_values(self.space.joint_epochs):
            if joint > self.train.epochs:
                raise ValueError(
                    f"space.joint_epochs ({joint:g}) exceeds train.epochs ({self.train.epochs})"
                )
        return self

    def default_params(self) -> TrialParams:
        """The single point `sftune train` runs: fixed values, else each range's default."""
        values = {}
        for name in CORE_DIMENSIONS + EXTRA_DIMENSIONS:
            dim = getattr(self.space, name)
            if dim is None:
                dim = getattr(self.train, name)
            values[name] = dim.midpoint() if isinstance(dim, Range | Choice) else dim
        return TrialParams.from_values(values)


class TrialParams(_Section):
    """The values one trial trains with (a point of the search space)."""

    alpha: float = Field(ge=0)
    lr: float = Field(gt=0)
    frozen_depth: int = Field(ge=0)
    weight_decay: float = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(32, ge=1)
    joint_epochs: int = Field(1, ge=0)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TrialParams:
        """Build from sampled values, rounding the integer dimensions."""
        clean = {k: (round(v) if k in INT_DIMENSIONS else float(v)) for k, v in values.items()}
        return cls(**clean)


def is_point(values: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether ``values`` (a trial's config) holds exactly ``point`` (e.g. the default point)."""
    return bool(point) and all(
        name in values and math.isclose(float(values[name]), float(value), rel_tol=1e-9)
        for name, value in point.items()
    )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["train.epochs=3", "space.alpha=10"]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} must look like section.key=value")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override")
        node[leaf] = _parse_value(raw)
    return nested


def _parse_value(raw: str) -> Any:
    if not raw.strip():
        return None
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string; a user means the number
            return float(value)
        except ValueError:
            return value
    return value


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for item in err.errors():
        loc = [str(p) for p in item["loc"]]
        key = ".".join(loc) or "<root>"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = f"unknown key; allowed here: {', '.join(_allowed_keys(loc[:-1]))}"
        lines.append(f"  {key}: {msg}")
    return "\n".join(dict.fromkeys(lines))


def _allowed_keys(parent: list[str]) -> list[str]:
    model: type[BaseModel] = AppConfig
    for part in parent:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def with_overrides(cfg: AppConfig, overrides: list[str], source: str = "config") -> AppConfig:
    """``cfg`` with dotted ``--set`` overrides applied, validated again."""
    values = _deep_merge(cfg.model_dump(mode="json"), parse_overrides(overrides))
    return build_config(values, f"{source} + --set overrides")


def build_config(values: dict[str, Any], source: str = "config") -> AppConfig:
    """Validate a nested dict into an :class:`AppConfig`, raising :class:`ConfigError`."""
    try:
        return AppConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


#: The configs that ship with sftune (package data): `--config default` names configs/default.yaml.
BUILTIN_CONFIGS = Path(__file__).resolve().parent / "configs"


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_CONFIGS.glob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """A config file's path: ``path`` itself, or the built-in config of that bare name."""
    path = Path(path)
    if path.is_file():
        return path
    builtin = BUILTIN_CONFIGS / f"{path.name}.yaml"
    if str(path) == path.stem and builtin.is_file():
        return builtin
    raise ConfigError(f"config file not found: {path} (built-in configs, by name: "
                      f"{', '.join(builtin_configs())})")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> AppConfig:
    """Load a YAML config (a file, a built-in config's name, or None for the built-in defaults)
    and apply dotted overrides."""
    values: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        path = resolve_config_path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        source = str(path)
    if overrides:
        values = _deep_merge(values, parse_overrides(overrides))
        source += " + --set overrides"
    return build_config(values, source)


def _describe_default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.model_dump().items()
                               if v is not None) + "}"
    return "null" if value is None else str(value)


def config_reference() -> str:
    """A Markdown table of every config key, its default and meaning (the README embeds it)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for section, field in AppConfig.model_fields.items():
        model = field.annotation
        for name, sub in model.model_fields.items():
            default = sub.get_default(call_default_factory=True)
            text = (sub.description or "").replace("|", "\\|")
            lines.append(f"| `{section}.{name}` | `{_describe_default(default)}` | {text} |")
    return "\n".join(lines)
