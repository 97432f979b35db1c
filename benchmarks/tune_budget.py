"""TPE + Hyperband against a random search with a 3x larger budget, same seeds (issue #6's target).

For each seed, on digits_cnn with the built-in training space (8 epochs per full trial):
- ``random``:      3N trials, random sampler, no pruning: every trial trains all its epochs;
- ``tpe_trials``:  N trials, TPE + Hyperband (the `compressor tune` defaults): a 3x smaller trial count;
- ``tpe_epochs``:  TPE + Hyperband with ``--budget-epochs`` = a third of the epochs random spent:
                   a 3x smaller compute budget, the currency Hyperband saves (pruned trials cost
                   only the epochs they ran, so it can try more configurations).
Each winner is refit on train+val and evaluated once on test. "Reached" means the TPE study's
best validation accuracy is at least random's. Studies resume (a rerun with the same work folder
only refits), so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path

RATIO = 3


def _study(out: Path, sampler: str, pruner: str, n_trials: int, seed: int, max_epochs: int | None = None) -> dict:
    from compressor.tuning.tune import tune

    result = tune(
        out, model="digits_cnn", n_trials=n_trials, sampler=sampler, pruner=pruner, seed=seed, max_epochs=max_epochs
    )
    return {
        "sampler": sampler,
        "pruner": pruner,
        "trials": sum(result["counts"].values()),
        "max_epochs": max_epochs,
        "best_val_accuracy": result["best"]["value"],
        "best_values": result["best"]["values"],
        "test_accuracy": result["final"]["test_accuracy"],
        "epochs_spent": result["epochs_spent"],
        "pruned": result["counts"]["PRUNED"],
        "seconds": result["seconds"],
    }


def _compare(tpe: dict, rnd: dict) -> dict:
    return {
        **tpe,
        "reached": tpe["best_val_accuracy"] >= rnd["best_val_accuracy"],
        "test_not_worse": tpe["test_accuracy"] >= rnd["test_accuracy"],
        "compute_ratio": round(rnd["epochs_spent"] / tpe["epochs_spent"], 2),
    }


def tune_vs_random(work: str, seeds: list[int] | None = None, trials: int = 10) -> dict:
    rows = []
    for seed in seeds if seeds is not None else [0, 1, 2]:
        rnd = _study(Path(work) / f"random-{seed}", "random", "none", RATIO * trials, seed)
        by_trials = _study(Path(work) / f"tpe-{seed}", "tpe", "hyperband", trials, seed)
        by_epochs = _study(
            Path(work) / f"tpe-epochs-{seed}",
            "tpe",
            "hyperband",
            10 * trials,
            seed,
            max_epochs=rnd["epochs_spent"] // RATIO,
        )
        rows.append(
            {
                "seed": seed,
                "random": rnd,
                "tpe_trials": _compare(by_trials, rnd),
                "tpe_epochs": _compare(by_epochs, rnd),
            }
        )
    summary = {
        key: {
            "reached": sum(r[key]["reached"] for r in rows),
            "test_not_worse": sum(r[key]["test_not_worse"] for r in rows),
            "mean_best_val": _mean(r[key]["best_val_accuracy"] for r in rows),
            "mean_test": _mean(r[key]["test_accuracy"] for r in rows),
        }
        for key in ("tpe_trials", "tpe_epochs")
    }
    summary["random"] = {
        "mean_best_val": _mean(r["random"]["best_val_accuracy"] for r in rows),
        "mean_test": _mean(r["random"]["test_accuracy"] for r in rows),
    }
    return {"trials": trials, "ratio": RATIO, "seeds": len(rows), "rows": rows, "summary": summary}


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4)
