"""Tests for engine.pipeline: stage work on real generated files, and embeddings."""
