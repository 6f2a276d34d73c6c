"""Selection scores as version tags, readable without TensorFlow."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Mapping

logger = logging.getLogger(__name__)

# Version tags that record a score. The key tag is written last and removed first,
# so a version with a matching key always carries the score measured under that key.
SCORE_TAG = "selection_score"
PROTOCOL_TAG = "selection_protocol"
CONFIG_TAG = "selection_config"
DATASET_TAG = "selection_dataset_digest"
RUN_TAG = "selection_run_id"
KEY_TAG = "selection_protocol_key"


@dataclass(frozen=True)
class ScoreRecord:
    """One version's selection score with everything needed to compare it."""

    score: float
    protocol: str
    key: str
    config: str
    dataset_digest: str
    run_id: str

    def tags(self) -> dict[str, str]:
        """Return the version tags in write order, the key last."""
        return {
            # repr() round-trips a float exactly, so a cached score compares like a fresh one.
            SCORE_TAG: repr(float(self.score)),
            PROTOCOL_TAG: self.protocol,
            CONFIG_TAG: self.config,
            DATASET_TAG: self.dataset_digest,
            RUN_TAG: self.run_id,
            KEY_TAG: self.key,
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "ScoreRecord | None":
        """Read a record from version tags; return None when any part is missing or invalid."""
        if KEY_TAG not in tags or SCORE_TAG not in tags:
            return None
        try:
            score = float(tags[SCORE_TAG])
        except ValueError:
            logger.warning("Tag %s=%r is not a number; the version counts as unscored.", SCORE_TAG, tags[SCORE_TAG])
            return None
        if not math.isfinite(score):
            return None
        return cls(
            score=score,
            protocol=tags.get(PROTOCOL_TAG, ""),
            key=tags[KEY_TAG],
            config=tags.get(CONFIG_TAG, ""),
            dataset_digest=tags.get(DATASET_TAG, ""),
            run_id=tags.get(RUN_TAG, ""),
        )
