"""Generate the pipeline notebooks (01–05) from the cell sources below.

Run from the repository root: ``.venv/bin/python notebooks/_build.py`` writes the notebooks
without outputs; then execute them in place (``make notebooks``) and commit the outputs.
Edit the notebooks here, not in JupyterLab, so that their structure stays reviewable:
exactly one ``parameters`` cell of literals, imports first, numbered sections, a last cell
that records results in ``metrics.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

KERNELSPEC = {"name": "mfjax", "display_name": "Python (mfjax)", "language": "python"}

IMPORTS = """\
import warnings

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mfjax import steps

%matplotlib inline
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
sns.set_theme(style="whitegrid", context="notebook")
pd.set_option("display.precision", 4)
pd.set_option("display.width", 120)"""

# the preparation parameters every notebook shares (a notebook run alone prepares the same split)
PREP_PARAMS = """\
dataset = "synthetic"  # "synthetic", a dataset name (ml-100k, ml-latest-small, ...) or a file path
seed = 0  # seeds the synthetic data, the split and the models
min_user_ratings = 5  # users with fewer ratings are removed (iterative k-core), in [1, inf)
min_item_ratings = 5  # items with fewer ratings are removed (iterative k-core), in [1, inf)
duplicates = "last"  # policy for repeated user-item pairs, one of: last, first, mean, sum, raise
split_method = "random"  # one of: random, per_user, temporal, leave_last_n
test_size = 0.2  # fraction held out for the final test, in (0, 1)
valid_size = 0.1  # fraction of training carved out for validation and tuning, in [0, 1)"""

PREP_KWARGS = """\
prep_options = dict(
    dataset=dataset,
    seed=seed,
    min_user_ratings=min_user_ratings,
    min_item_ratings=min_item_ratings,
    duplicates=duplicates,
    split_method=split_method,
    test_size=test_size,
    valid_size=valid_size,
)"""

MODEL_PARAMS = """\
model = "mf"  # registry name of the model trained here
factors = 32  # latent dimensions, in [1, inf)
epochs = 40  # maximum number of epochs, in [1, inf)
learning_rate = 0.1  # peak learning rate (cosine schedule), > 0
reg = 0.1  # L2 regularisation of the factors, in [0, inf)
optimizer = "rowwise_adagrad"  # by name: "rowwise_adagrad", "sgd", "adagrad", "adam", ...
patience = 5  # stop after this many epochs without a better validation RMSE (0: off), in [0, inf)
batch_size = 1024  # ratings per minibatch, in [1, inf)
k = 10  # list length of the headline ranking metrics, in [1, inf)
threshold = 4.0  # a test rating at or above it counts as relevant"""

HYPER_KWARGS = """\
hyper = dict(
    seed=seed,
    factors=factors,
    epochs=epochs,
    learning_rate=learning_rate,
    reg=reg,
    optimizer=optimizer,
    patience=patience or None,
    batch_size=batch_size,
)"""


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str, *, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(text: str) -> nbformat.NotebookNode:
    return code(text, tags=("parameters",))


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata["language_info"] = {"name": "python"}
    n_params = sum("parameters" in c.metadata.get("tags", []) for c in cells)
    assert n_params == 1, "exactly one parameters cell"
    return nb


# ---------------------------------------------------------------------------------------- 01
PREPARE = notebook(
    [
        md("""
# 01 · Prepare the data

This notebook turns a ratings file (or the built-in synthetic data) into the **split** that
every later notebook trains and evaluates on. It loads the interactions, looks at their
shape (ratings, item popularity, user activity), cleans them (duplicate pairs, k-core
filtering), and splits them into **train**, **validation** (for tuning) and **test** (for
the final figures), sharing one id map. The split is saved in the run folder
(`<run_dir>/split/`), where `02_train`, `03_evaluate` and `04_compare` pick it up.

Change the parameters below and rerun, or run it in batch: `mfjax run -p dataset ml-100k`.
"""),
        code(IMPORTS + "\n\nfrom mfjax import data\nfrom mfjax.plots import data as data_plots"),
        params('run_dir = ""  # the run folder; "" means reports/notebook-default\n' + PREP_PARAMS),
        md("""
## 1. Load, clean and split

`steps.prepare` loads the dataset, applies the cleaning policy and the k-core filter, splits
the result and saves the split into the run folder. Here are the first raw rows: every
source becomes the same four columns `user, item, rating, timestamp`.
"""),
        code(PREP_KWARGS + "\nprep = steps.prepare(run_dir, **prep_options)\nprep.raw.head()"),
        md("""
## 2. What the data look like

Counts, density and the shape of the distributions of the cleaned data (section 6 says what
cleaning removed). Recommenders live on sparse data: density is the share of the user ×
item matrix that holds a rating; the Gini coefficient and the share of the top 10% of items
measure how concentrated popularity is.
"""),
        code("steps.summary_table(prep.clean)"),
        md("""
## 3. Rating distribution

How often each rating value occurs. A skew towards high ratings is usual (people rate what
they chose to watch); it is why RMSE alone says little about ranking quality, and why the
ranking metrics count a test rating ≥ `threshold` as relevant.
"""),
        code("data_plots.rating_distribution_plot(prep.clean)\nplt.show()"),
        md("""
## 4. Item popularity: the long tail

Items sorted by their number of ratings. A few items collect most ratings and most items
have few: a popularity ranking is a strong baseline, and rare items are hard to learn.
"""),
        code("data_plots.item_popularity_plot(prep.clean)\nplt.show()"),
        md("""
## 5. User activity

Ratings per user. Skewed activity means the per-user metrics average over many light users
with little training data; `03_evaluate` breaks the metrics down by this activity.
"""),
        code("data_plots.user_activity_plot(prep.clean)\nplt.show()"),
        md("""
## 6. What cleaning removed

Each cleaning step and the rows, users and items it removed: duplicate pairs (resolved by
the `duplicates` policy), missing or non-finite ratings, and the iterative k-core filter
(`min_user_ratings`, `min_item_ratings`), which repeats until every remaining user and
item has enough ratings.
"""),
        code("prep.report.to_frame()"),
        md("""
## 7. The split

Rows, users and items in each part. Rows of the validation and test parts whose user or
item never occurs in training cannot be scored by a collaborative model: they are dropped
and counted (`cold_start_dropped`). The figure shows the sizes of the parts.
"""),
        code(
            "split_table = steps.split_summary(prep.split)\n"
            "display(split_table)\n"
            'ax = sns.barplot(data=split_table.reset_index(), x="part", y="rows", hue="part")\n'
            'ax.set(title="Ratings per part of the split", ylabel="ratings")\n'
            "plt.show()"
        ),
        md("""
## 8. Record

The dataset, the preparation parameters and the data summary go into
`<run_dir>/metrics.json`, which the later notebooks extend with model metrics.
"""),
        code(
            "steps.record_metrics(\n"
            "    run_dir,\n"
            "    dataset=dataset,\n"
            "    params=prep_options,\n"
            '    extra={"data": steps.summary_record(data.summarize(prep.clean), prep.split)},\n'
            ")\n"
            "sorted(steps.read_metrics(run_dir)[\"data\"])"
        ),
    ]
)


# ---------------------------------------------------------------------------------------- 02
TRAIN = notebook(
    [
        md("""
# 02 · Train a matrix-factorization model

This notebook trains the explicit biased matrix-factorization model (global mean + user and
item biases + a dot product of latent factors, squared error plus L2) with row-wise
Adagrad (or any optax optimizer by name), one jitted `lax.scan` per epoch. It watches the training loss and the
validation RMSE per epoch, saves the model into the run folder
(`<run_dir>/models/<model>.npz`) and shows what it recommends to one user.

It reads the split `01_prepare` saved; run alone, it prepares that split first with the
same parameters. A sweep (`mfjax sweep`) runs it once per grid point.
"""),
        code(IMPORTS + "\n\nfrom mfjax.plots import training as training_plots"),
        params(
            'run_dir = ""  # the run folder; "" means reports/notebook-default\n'
            'split_dir = ""  # where the prepared split lives; "" means the run folder\n'
            + PREP_PARAMS
            + "\n"
            + MODEL_PARAMS
        ),
        md("""
## 1. The split

The prepared split from the run folder (or a fresh one, prepared exactly as `01_prepare`
would). Training uses the train part; the validation part drives the per-epoch monitoring.
"""),
        code(
            PREP_KWARGS + "\nsplit = steps.get_split(run_dir, split_dir=split_dir, **prep_options)\n"
            "steps.split_summary(split)"
        ),
        md("""
## 2. Train

`steps.train_model` fits the model and saves it to the run folder. The cell's output (the
fit time) varies from machine to machine.
"""),
        code(
            "# NBVAL_IGNORE_OUTPUT\n"
            + HYPER_KWARGS
            + "\nmf = steps.train_model(run_dir, split, model=model, **hyper)\n"
            'print(f"{model}: {len(mf.history_)} epochs in {mf.fit_seconds_:.2f} s")'
        ),
        md("""
## 3. Learning curve

Training loss and validation RMSE per epoch. The loss should fall steadily; the validation
RMSE falls, then flattens (or rises when the model starts to overfit: more `reg` or fewer
`factors` help). Training stops at `epochs`, or after `patience` epochs without a better
validation RMSE, keeping the parameters of the best epoch.
"""),
        code("training_plots.learning_curves_plot(mf)\nplt.show()"),
        md("""
## 4. Metric history

The same history as a table (rounded; the per-epoch timings are left out because they vary).
"""),
        code('mf.history_.drop(columns=["seconds"], errors="ignore").round(4).tail(10)'),
        md("""
## 5. What the model recommends

The top-10 for the most active training user, next to the items that user rated highest in
training (with titles where the dataset has them). Items the user rated in training are
excluded from the recommendations.
"""),
        code(
            "example = steps.recommendation_example(mf, split, k=k, titles=steps.item_titles(dataset))\n"
            'print("user", example.attrs["user"])\n'
            "example"
        ),
        md("""
## 6. Record

The fit time and the final validation RMSE go into `<run_dir>/metrics.json`; the full
evaluation is the job of `03_evaluate`.
"""),
        code(
            "record = steps.training_record(mf)\n"
            "steps.record_metrics(\n"
            "    run_dir,\n"
            "    dataset=dataset,\n"
            "    params={**prep_options, **hyper, \"model\": model},\n"
            "    model_name=model,\n"
            "    metrics=record,\n"
            ")\n"
            "sorted(record)"
        ),
    ]
)


# ---------------------------------------------------------------------------------------- 03
EVALUATE = notebook(
    [
        md("""
# 03 · Evaluate the model

This notebook measures the trained model on held-out data, under one protocol: top-K lists
over **all** items, with each user's training items excluded; a test rating ≥ `threshold`
counts as relevant; users with no relevant test item are left out of the means (and
counted). Every mean comes with a 95% bootstrap confidence interval over users. It also
computes the same metrics on the **validation** part, which is what tuning (`05_tune`)
selects on: the test part is only read for the final figures.

It loads the model `02_train` saved; run alone, it trains it first with the same parameters.
"""),
        code(IMPORTS + "\n\nfrom mfjax.plots import evaluation as evaluation_plots"),
        params(
            'run_dir = ""  # the run folder; "" means reports/notebook-default\n'
            'split_dir = ""  # where the prepared split lives; "" means the run folder\n'
            + PREP_PARAMS
            + "\n"
            + MODEL_PARAMS
        ),
        md("""
## 1. Split and model

The split and the trained model from the run folder (or built as `01_prepare` and
`02_train` would build them).
"""),
        code(
            PREP_KWARGS
            + "\n"
            + HYPER_KWARGS
            + "\nsplit = steps.get_split(run_dir, split_dir=split_dir, **prep_options)\n"
            "mf = steps.get_model(run_dir, split, model=model, **hyper)\n"
            "mf"
        ),
        md("""
## 2. Test metrics with confidence intervals

Rating error (RMSE, MAE) on every test rating, and the ranking metrics at several list
lengths: precision, recall, MAP (denominator `min(K, |relevant|)`), NDCG, hit rate, MRR,
AUC, plus novelty and catalogue coverage of the lists. `n_users` is the number of users the
mean is taken over, `n_excluded` those without a relevant test item. The rating model ranks
by predicted rating; `04_compare` puts these figures next to models built for ranking.
"""),
        code(
            "ks = sorted({1, 5, 10, 20, k})\n"
            "test_result = steps.evaluate_model(mf, split, part=\"test\", k=ks, threshold=threshold, seed=seed)\n"
            "test_result.summary.round(4)"
        ),
        md("""
## 3. Metrics as the list grows

Each ranking metric against K, with its confidence band. Precision falls and recall rises
with K; the curves show how much of the quality sits at the top of the list.
"""),
        code(
            "fig, axes = plt.subplots(1, 3, figsize=(16, 4))\n"
            "evaluation_plots.metric_at_k_plot(test_result, \"precision\", ax=axes[0], model=model)\n"
            "evaluation_plots.metric_at_k_plot(test_result, \"recall\", ax=axes[1], model=model)\n"
            "evaluation_plots.metric_at_k_plot(test_result, \"ndcg\", ax=axes[2], model=model)\n"
            "plt.tight_layout()\n"
            "plt.show()"
        ),
        md("""
## 4. Who is served well: metrics by user activity

The per-user NDCG@K, grouped by how many training ratings the user has. Light users (few
ratings) get noisier, usually weaker recommendations; a model that only serves heavy users
well shows it here.
"""),
        code(
            "evaluation_plots.per_user_activity_plot(test_result, split, \"ndcg\", k, model=model)\n"
            "plt.show()"
        ),
        md("""
## 5. Validation metrics

The same protocol on the validation part (the training part is the same; the validation
ratings play the role of the test). These are the numbers tuning compares; next to the test
numbers they show how far validation predicts test.
"""),
        code(
            "valid_result = steps.evaluate_model(mf, split, part=\"valid\", k=ks, threshold=threshold, seed=seed)\n"
            "steps.valid_vs_test(valid_result, test_result, k=k).round(4)"
        ),
        md("""
## 6. Record

Test metrics (with `_ci` intervals) and validation metrics (prefixed `valid_`) go into
`<run_dir>/metrics.json`.
"""),
        code(
            "steps.record_metrics(\n"
            "    run_dir,\n"
            "    dataset=dataset,\n"
            "    params={**prep_options, **hyper, \"model\": model, \"k\": k, \"threshold\": threshold},\n"
            "    model_name=model,\n"
            "    metrics={\n"
            "        **steps.flat_metrics(test_result, k=k),\n"
            "        **steps.flat_metrics(valid_result, k=k, prefix=\"valid_\"),\n"
            "        **steps.training_record(mf),\n"
            "    },\n"
            ")\n"
            "steps.headline_metrics(run_dir, model, k=k)"
        ),
    ]
)


# ---------------------------------------------------------------------------------------- 04
COMPARE = notebook(
    [
        md("""
# 04 · Compare models

This notebook trains a roster of models on the same split and evaluates them under the same
protocol as `03_evaluate`: matrix factorization with two optimizers (row-wise Adagrad and
plain SGD), BPR and iALS (implicit-feedback MF), the baselines every comparison needs (random, popularity, bias-only,
item-kNN, EASE), and, where installed, the peer libraries `implicit` and Surprise (labelled
*external*). It reports each model's metrics with confidence intervals, whether the
differences are significant, what they cost in time, and what they recommend.
"""),
        code(IMPORTS + "\n\nfrom mfjax.plots import evaluation as evaluation_plots"),
        params(
            'run_dir = ""  # the run folder; "" means reports/notebook-default\n'
            'split_dir = ""  # where the prepared split lives; "" means the run folder\n'
            + PREP_PARAMS
            + "\n"
            + MODEL_PARAMS
            + "\n"
            'roster = ["mf", "mf_sgd", "bpr", "ials", "random", "popularity", "bias", "itemknn", "ease",\n'
            '          "implicit_als", "implicit_bpr", "surprise_svd"]  # models compared; external ones are skipped when absent\n'
            "seeds = [0, 1]  # each model is trained once per seed: mean and spread across seeds\n"
            'baseline = ""  # the reference of the paired tests; empty: the best of random, popularity, bias, itemknn, ease'
        ),
        md("""
## 1. Split and roster

The split of the run folder (or one prepared as `01_prepare` would), and the roster: each
entry builds a model from the shared hyperparameters. External peers that are not installed
are listed as skipped.
"""),
        code(
            PREP_KWARGS
            + "\n"
            + HYPER_KWARGS
            + "\nsplit = steps.get_split(run_dir, split_dir=split_dir, **prep_options)\n"
            "models = steps.build_roster(roster, **hyper)\n"
            "steps.roster_table(models)"
        ),
        md("""
## 2. Train and evaluate every model

`mfjax.compare` trains each model once per seed on the training part and evaluates it on the
test part. The progress and timings in this cell's output vary from run to run.
"""),
        code(
            "# NBVAL_IGNORE_OUTPUT\n"
            "comparison = steps.compare_models(\n"
            "    models, split, seeds=seeds, k=k, threshold=threshold, baseline=baseline, dataset=dataset\n"
            ")\n"
            "comparison.runs.groupby(\"model\", sort=False)[[\"fit_seconds\", \"eval_seconds\"]].mean().round(2)"
        ),
        md("""
## 3. Comparison table

Mean over users (and seeds) with 95% confidence intervals, for RMSE (rating models only)
and the ranking metrics at K. Every model, the external peers included (implicit's BPR
runs single-threaded for this reason), reproduces exactly for a given seed on a given
machine.

How to read it: rating models (MF, bias-only, Surprise's SVD) learn to predict the rating
of items a user chose to rate, and rank the whole catalogue by that prediction; ranking
models (BPR, iALS, EASE, item-kNN, popularity) learn *which* items users interact with.
On top-K metrics over the full catalogue the second kind usually wins, often even the bare
popularity ranking, because what a user rates at all carries most of the signal
(Cremonesi, Koren & Turrin, 2010). A low RMSE and a good top-K list are different goals;
the table shows both.
"""),
        code("steps.comparison_table(comparison, k=k).round(4)"),
        md("""
## 4. Ranking quality at a glance

NDCG@K and precision@K per model with their confidence intervals; external peers are
labelled.
"""),
        code("evaluation_plots.metric_bars_plot(comparison, k=k)\nplt.show()"),
        md("""
NDCG@K as the list grows, for every model (bands: 95% intervals), and the per-user NDCG@K by
user activity: where in the activity range each model wins or loses.
"""),
        code(
            "evaluation_plots.metric_at_k_plot(comparison, \"ndcg\")\n"
            "plt.show()\n"
            "evaluation_plots.per_user_activity_plot(comparison, split, \"ndcg\", k)\n"
            "plt.show()"
        ),
        md("""
## 5. Are the differences real?

Each model against the baseline, on the per-user metric: paired t-test and Wilcoxon
signed-rank test, p-values Holm-corrected over the roster. A small corrected p-value says
the difference would rarely arise from user-to-user noise alone.
"""),
        code("steps.significance_view(comparison, k=k)"),
        md("""
## 6. Quality against time

Fit time (log scale) against NDCG@K: the models worth having sit up and to the left. The
times vary from machine to machine.
"""),
        code(
            "# NBVAL_IGNORE_OUTPUT\n"
            "evaluation_plots.time_quality_plot(comparison, f\"ndcg@{k}\")\nplt.show()"
        ),
        md("""
## 7. What they recommend

The top-5 lists of every model for a few test users, side by side (with titles where the
dataset has them); a `*` marks an item the user rated highly in the test part. Below: the
test items those users rated highly, the ones a good list would contain.
"""),
        code("display(steps.examples_view(comparison))\ncomparison.liked.round(4)"),
        md("""
## 8. Record

Every model's metrics, intervals and fit time go into `<run_dir>/metrics.json`.
"""),
        code(
            "recorded = steps.record_comparison(\n"
            "    run_dir,\n"
            "    comparison,\n"
            "    dataset=dataset,\n"
            "    params={**prep_options, **hyper, \"roster\": roster, \"seeds\": seeds, \"k\": k},\n"
            "    k=k,\n"
            ")\n"
            "sorted(recorded)"
        ),
    ]
)


# ---------------------------------------------------------------------------------------- 05
TUNE = notebook(
    [
        md("""
# 05 · Tune the hyperparameters

This notebook reads a sweep — the same model trained at every point of a grid of
hyperparameters (`mfjax sweep -p factors 8,32 -p reg 0.001,0.05`) — and shows how sensitive
the quality is to each parameter, which configuration is best **on the validation split**,
and how far that validation figure carries over to the test split, which is read only for
the chosen configuration's final figure.

With `sweep_dir` empty it builds a small default sweep in the run folder first (the same
train-and-evaluate steps as `02_train` and `03_evaluate`, per grid point).
"""),
        code(IMPORTS),
        params(
            'sweep_dir = ""  # the sweep folder holding sweep.csv; "" builds the default sweep\n'
            'run_dir = ""  # where to record the chosen configuration; "" means the sweep folder\n'
            'dataset = "synthetic"  # used only to build the default sweep\n'
            "seed = 0\n"
            'model = "mf"\n'
            'metric = "valid_rmse"  # the validation column that selects the configuration\n'
            'row_param = "factors"  # heatmap rows\n'
            'col_param = "reg"  # heatmap columns\n'
            "k = 10\n"
            "threshold = 4.0\n"
            "grid_factors = [8, 32]  # the default sweep's grid (used when sweep_dir is empty)\n"
            "grid_reg = [0.01, 0.05, 0.2]\n"
            "epochs = 20  # the default sweep's training length\n"
            "learning_rate = 0.1  # the default sweep's learning rate"
        ),
        md("""
## 1. The sweep table

One row per grid point: the swept parameters, validation metrics (`valid_…`), test metrics
and the fit time.
"""),
        code(
            "sweep_path = steps.ensure_sweep(\n"
            "    sweep_dir,\n"
            "    grid={\"factors\": grid_factors, \"reg\": grid_reg},\n"
            "    model=model,\n"
            "    k=k,\n"
            "    threshold=threshold,\n"
            "    dataset=dataset,\n"
            "    seed=seed,\n"
            "    epochs=epochs,\n"
            "    learning_rate=learning_rate,\n"
            ")\n"
            "table = steps.load_sweep(sweep_path)\n"
            "steps.sweep_view(table, [row_param, col_param], metric=metric).round(4)"
        ),
        md("""
## 2. Sensitivity over two parameters

The validation metric over the grid of the two swept parameters. A flat map means the model
is robust to them; a sharp optimum means they matter and deserve a finer grid around it.
"""),
        code(
            "heat = table.pivot_table(index=row_param, columns=col_param, values=metric)\n"
            "ax = sns.heatmap(heat, annot=True, fmt=\".4f\", cmap=\"viridis\")\n"
            "ax.set(title=f\"{metric} by {row_param} and {col_param}\")\n"
            "plt.show()"
        ),
        md("""
## 3. Sensitivity over one parameter

The validation metric against the first parameter, one line per value of the second: where
the lines cross or diverge, the two parameters interact.
"""),
        code(
            "ax = sns.lineplot(data=table, x=row_param, y=metric, hue=col_param, marker=\"o\", palette=\"viridis\")\n"
            "ax.set(title=f\"{metric} against {row_param}\", ylabel=metric)\n"
            "plt.show()"
        ),
        md("""
## 4. The best configuration

Chosen on the validation metric alone. Its test metric, with the 95% confidence interval
recorded for it, is the figure to report.
"""),
        code("best = steps.best_point(table, metric)\nsteps.best_summary(best, table, metric=metric)"),
        md("""
## 5. Validation against test

Each grid point's validation metric against its test metric. Points on the diagonal mean
validation predicts test well; the chosen point is marked. The gap of the chosen point is
the optimism of selecting on validation.
"""),
        code(
            "steps.plot_valid_vs_test(table, metric=metric, best=best)\n"
            "plt.show()"
        ),
        md("""
## 6. Record

The chosen configuration and its validation and test metrics go into the run folder's
`metrics.json` (by default, the sweep folder's).
"""),
        code(
            "record_dir = run_dir or sweep_path\n"
            "steps.record_best(record_dir, best, dataset=dataset, model=model, metric=metric, table=table)\n"
            "steps.headline_metrics(record_dir, f\"{model}_best\", k=k)"
        ),
    ]
)


NOTEBOOKS = {
    "01_prepare.ipynb": PREPARE,
    "02_train.ipynb": TRAIN,
    "03_evaluate.ipynb": EVALUATE,
    "04_compare.ipynb": COMPARE,
    "05_tune.ipynb": TUNE,
}


def main(argv: list[str]) -> None:
    names = argv or list(NOTEBOOKS)
    for name in names:
        nbformat.write(NOTEBOOKS[name], HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main(sys.argv[1:])
