"""Model splitter: export torch models to ONNX, find split points, cut them into head and tail."""
