"""A deterministic synthetic fraud data set shared by model training and feature loading.

`users(n, seed)` gives the stored features of n users (ids "u00000"...), and
`transactions(users, n, seed)` gives request-time features plus a fraud label drawn
from a known logistic model, so trained models have real signal to find.
`merchants(n, seed)` gives the stored features of n merchants (ids "m0000"...), and
`with_merchants(transactions, merchants, seed)` gives each transaction a merchant (its
`merchant.*` features and `merchant_id`) and adds merchant-driven fraud to the labels: the
signal only a model reading both groups (fraud:3) can find. Its own random stream, so the
user-only data set (and the models trained on it) are unchanged.
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
MERCHANT_CATEGORIES = ["grocery", "travel", "electronics", "gaming", "other"]
MERCHANT_STORE_FEATURES = ["risk_score", "category"]  # registry group `merchant`
MERCHANT_FEATURES = [f"merchant.{name}" for name in MERCHANT_STORE_FEATURES]  # as a `user` model names them


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


def merchants(n: int = 200, seed: int = 13) -> pd.DataFrame:
    """Stored per-merchant features, indexed by `entity_id` ("m0000"...)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "entity_id": [f"m{i:04d}" for i in range(n)],
            "risk_score": np.clip(rng.beta(0.6, 6.0, n), 0, 1).round(4),
            "category": rng.choice(MERCHANT_CATEGORIES, n, p=[0.35, 0.15, 0.2, 0.1, 0.2]),
        }
    )
    return frame.set_index("entity_id")


def with_merchants(frame: pd.DataFrame, merchant_frame: pd.DataFrame, seed: int = 17) -> pd.DataFrame:
    """`frame` (transactions) with a random merchant per row and merchant-driven fraud added to `label`."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    picks = merchant_frame.iloc[rng.integers(0, len(merchant_frame), n)].reset_index()
    out = frame.copy()
    out["merchant_id"] = picks["entity_id"].to_numpy()
    for name in MERCHANT_STORE_FEATURES:
        out[f"merchant.{name}"] = picks[name].to_numpy()
    logit = -5.0 + 9.0 * picks["risk_score"] + 1.2 * picks["category"].isin(["gaming", "electronics"]).astype(float)
    extra = rng.random(n) < 1.0 / (1.0 + np.exp(-logit.to_numpy()))
    out["label"] = (out["label"].to_numpy().astype(bool) | extra).astype(int)
    return out
