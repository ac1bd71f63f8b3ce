"""Shared by all three services: wire format, quantization, sessions, images. Never imports torch."""
