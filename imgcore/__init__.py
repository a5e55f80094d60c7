"""Shared building blocks of imgsearch: image decoding, errors, ONNX runtime, model cards, storage, retrieval
measures."""
