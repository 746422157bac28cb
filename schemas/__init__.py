"""The JSON Schemas of the boundary documents, installed as the package edgeprune.schemas."""
