"""Edge service: unpacks feature frames, runs the tail of each deployed split, answers with predictions."""
