"""Policies that write prompts token by token, and the vocabularies they write with."""

from __future__ import annotations

from policies.lm_adapter import AdapterAndValue, BackboneFeatures, LMAdapterPolicy
from policies.vocab import VOCABULARIES, ActionVocabulary, build_vocabulary

__all__ = ["VOCABULARIES", "ActionVocabulary", "AdapterAndValue", "BackboneFeatures", "LMAdapterPolicy", "build_vocabulary"]
