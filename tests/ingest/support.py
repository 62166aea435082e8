"""A test registry and helpers for the ingestion tests."""

from __future__ import annotations

from predmesh.featurestore.registry import Registry, parse_registry


def registry() -> Registry:
    """`user` (group max_age 1 h; txn_count 1 day) and `merchant` (no freshness limit)."""
    return parse_registry(
        {
            "entities": {
                "user": {
                    "max_age_s": 3600,
                    "features": {
                        "spend": {
                            "dtype": "float",
                            "source": "store",
                            "default": 0.0,
                            "min": 0,
                            "max": 1_000_000,
                            "p5": 1,
                            "p95": 900,
                        },
                        "country": {
                            "dtype": "category",
                            "source": "store",
                            "default": "other",
                            "categories": ["US", "FR", "other"],
                            "common": ["US", "FR"],
                        },
                        "txn_count": {"dtype": "int", "source": "store", "default": 0, "max_age_s": 86400},
                        "amount": {"dtype": "float", "source": "request", "default": 0.0},
                    },
                },
                "merchant": {
                    "features": {"risk": {"dtype": "float", "source": "store", "default": 0.5, "min": 0, "max": 1}}
                },
            }
        }
    )
