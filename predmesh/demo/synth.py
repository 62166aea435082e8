"""A deterministic synthetic fraud data set shared by model training and feature loading.

`users(n, seed)` gives the stored features of n users (ids "u00000"...), and
`transactions(users, n, seed)` gives request-time features plus a fraud label drawn
from a known logistic model, so trained models have real signal to find.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "other"]
CHANNELS = ["web", "app", "pos"]
STORE_FEATURES = [
    "account_age_days",
    "txn_count_7d",
    "avg_txn_amount_30d",
    "chargeback_rate_90d",
    "country",
    "is_verified",
]
REQUEST_FEATURES = ["amount", "hour_of_day", "channel"]
ALL_FEATURES = STORE_FEATURES + REQUEST_FEATURES


def users(n: int = 1000, seed: int = 7) -> pd.DataFrame:
    """Stored per-user features, indexed by `entity_id`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "entity_id": [f"u{i:05d}" for i in range(n)],
            "account_age_days": rng.gamma(2.0, 300.0, n).round(1),
            "txn_count_7d": rng.poisson(6, n),
            "avg_txn_amount_30d": rng.lognormal(3.8, 0.8, n).round(2),
            "chargeback_rate_90d": np.clip(rng.beta(0.5, 30.0, n), 0, 1).round(4),
            "country": rng.choice(COUNTRIES, n, p=[0.35, 0.15, 0.12, 0.1, 0.13, 0.1, 0.05]),
            "is_verified": rng.random(n) < 0.7,
        }
    )
    return frame.set_index("entity_id")


def transactions(user_frame: pd.DataFrame, n: int = 20000, seed: int = 11) -> pd.DataFrame:
    """Transactions of random users: all features plus `label` (1 = fraud)."""
    rng = np.random.default_rng(seed)
    picks = user_frame.iloc[rng.integers(0, len(user_frame), n)].reset_index()
    picks["amount"] = (picks["avg_txn_amount_30d"] * rng.lognormal(0.0, 0.9, n)).round(2)
    picks["hour_of_day"] = rng.integers(0, 24, n)
    picks["channel"] = rng.choice(CHANNELS, n, p=[0.5, 0.4, 0.1])
    logit = (
        -4.0
        + 1.2 * np.log1p(picks["amount"] / (picks["avg_txn_amount_30d"] + 1.0))
        - 0.002 * np.minimum(picks["account_age_days"], 1000)
        + 25.0 * picks["chargeback_rate_90d"]
        - 1.0 * picks["is_verified"].astype(float)
        + 0.8 * picks["country"].isin(["BR", "other"]).astype(float)
        + 0.6 * ((picks["hour_of_day"] < 5).astype(float))
        + 0.5 * (picks["channel"] == "web").astype(float)
    )
    prob = 1.0 / (1.0 + np.exp(-logit))
    picks["label"] = (rng.random(n) < prob).astype(int)
    return picks
