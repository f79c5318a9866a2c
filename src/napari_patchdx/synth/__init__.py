"""Deterministic synthetic cohorts, the demo data and test fixtures: whole-slide images (:mod:`.wsi`) and chest X-rays
(:mod:`.cxr`)."""
