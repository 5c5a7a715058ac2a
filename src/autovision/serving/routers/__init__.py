"""One router per resource: health, predict (Vertex AI / TF Serving), upload, v2 (KServe),
metrics, admin."""
