"""Geva, Bastings, Filippova & Globerson (2023), *Dissecting Recall of Factual Associations in
Auto-Regressive Language Models* (EMNLP), on any TransformerLens model: notebook 01's method.

The method reads top to bottom, one module per step of the paper (Figure 1: (A) the subject is
enriched by early MLPs, (B) the relation propagates to the last position, (C) attention extracts
the attribute from the subject):

1. ``facts``: the facts the model knows, their subject spans, and right-padded batches.
2. ``knockout``: attention knockout of the edges into the last position from the subject, the
   relation (non-subject) positions or the last position, in a window around each layer: the
   critical points of (B) and (C). ``knockout_sweep`` (batched), ``knockout_loop`` (reference).
3. ``attributes``: what counts as an attribute of a subject (token sets from texts about it).
4. ``enrichment``: the attributes rate of hidden states by layer and position (``attribute_rates``)
   and its change with early MLP or attention sublayers zeroed (``enrichment_knockout``): (A).
5. ``readout``: the top-1 token of many writes read in the vocabulary, fast.
6. ``extraction``: extraction events of attention and MLP sublayers and heads at the last position,
   also with subject -> last blocked (``sublayer_top_tokens``): (C).
7. ``heads``: heads whose OV circuits map subjects to attributes (``head_attribute_hits``).

``harness`` holds the notebook's ``PRESETS`` and the bootstrap statistics of its verdicts,
``claims`` turns them into the notebook's "paper vs here" rows (``utils.verdicts``) and
``figures`` draws its figures.

Every public name of those modules is re-exported here (``from utils import recall;
recall.knockout_sweep(...)``), with ``project`` (``utils.prompts.project``: hidden states read
through the final norm and the unembedding).
"""

from __future__ import annotations

from utils.prompts import project
from utils.recall import (
    attributes,
    claims,
    enrichment,
    extraction,
    facts,
    figures,
    harness,
    heads,
    knockout,
    readout,
)
from utils.recall.attributes import *  # noqa: F403  (each module's __all__)
from utils.recall.claims import *  # noqa: F403  (each module's __all__)
from utils.recall.enrichment import *  # noqa: F403  (each module's __all__)
from utils.recall.extraction import *  # noqa: F403  (each module's __all__)
from utils.recall.facts import *  # noqa: F403  (each module's __all__)
from utils.recall.figures import *  # noqa: F403  (each module's __all__)
from utils.recall.harness import *  # noqa: F403  (each module's __all__)
from utils.recall.heads import *  # noqa: F403  (each module's __all__)
from utils.recall.knockout import *  # noqa: F403  (each module's __all__)
from utils.recall.readout import *  # noqa: F403  (each module's __all__)

__all__ = [
    *attributes.__all__,
    *claims.__all__,
    *enrichment.__all__,
    *extraction.__all__,
    *facts.__all__,
    *figures.__all__,
    *harness.__all__,
    *heads.__all__,
    *knockout.__all__,
    *readout.__all__,
    "project",
]
