"""results: the boundary documents, each with one reader/writer and a version: the run folder's manifest, the
agent's result, and the store. Never imports TensorFlow or paramiko.
"""
