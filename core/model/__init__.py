"""Models: the ViT backbone (the one module that touches vit-pytorch's internals) and the reference CNN."""
