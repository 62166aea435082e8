"""Time and size limits of the gateway's request path (seconds, counts), from GatewaySettings."""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway.core.coalescer import Window


@dataclass(frozen=True, slots=True)
class PredictorLimits:
    features_timeout_s: float
    inference_timeout_s: float
    max_batch_items: int
    # Large batches get proportionally more time (the request deadline still bounds it).
    features_timeout_per_item_s: float = 0.0
    inference_timeout_per_item_s: float = 0.0
    min_inference_budget_s: float = 0.005
    max_shadow_inflight: int = 256
    # Fraction of prediction records that carry their feature values (drift monitoring).
    log_features_sample: float = 0.0
    # Coalescing of concurrent requests into one features and one inference call.
    coalesce_max_rows: int = 64
    coalesce_max_wait_s: float = 0.001
    coalesce_max_inflight: int = 2
    shadow_max_wait_s: float = 0.05

    def features_timeout(self, items: int) -> float:
        """Upper bound on one feature fetch for `items` entities (seconds)."""
        return self.features_timeout_s + self.features_timeout_per_item_s * max(0, items - 1)

    def inference_timeout(self, rows: int) -> float:
        """Upper bound on one inference call for `rows` rows (seconds)."""
        return self.inference_timeout_s + self.inference_timeout_per_item_s * max(0, rows - 1)

    @property
    def primary_window(self) -> Window:
        return Window(
            max(1, self.coalesce_max_rows), self.coalesce_max_wait_s, True, max(0, self.coalesce_max_inflight)
        )

    @property
    def shadow_window(self) -> Window:
        # Nobody waits for a shadow: always gather for the whole window.
        return Window(max(1, self.coalesce_max_rows), self.shadow_max_wait_s, False, max(0, self.coalesce_max_inflight))
