"""Post-training quantization: the shared PTQ toolkit and one module per paper."""
