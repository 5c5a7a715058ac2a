"""Models: the backbone registry, pretrained weights, preprocessing and the model package."""
