"""Readers: a framework's model as an archc.match.Graph (its layers with weights and how data flows between
them), for matching it against a spec (`archc.load_weights`) and, later, `archc diff` and `archc import`.
Each reader imports its framework when called, never at import time."""
