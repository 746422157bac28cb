"""Tests of the host pipeline (edgeprune optimize)."""
