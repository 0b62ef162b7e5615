"""A model file as an ONNX graph: uint8 pixels (N, C, S, S) at the model's side in, class probabilities
(N, n_classes) out, the normalisation inside the graph, so that it runs without this project (onnxruntime
alone). A model with a class head exports its softmax; one without (a pretraining) exports the kNN vote over
its training embeddings, the bank kept in the graph as constants. An image is framed before it goes in as the
training images were (core/data/framing.py): photos are resized and centre-cropped, light-on-dark objects
found and fitted; the README shows the few lines for photos.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.data.augment import to_model_input
from core.model.backbone import build_backbone
from core.serve.classifier import HEAD, KNN
from core.serve.model_file import ModelFile

OPSET = 18


class Probabilities(nn.Module):
    """uint8 (N, C, S, S) -> (N, n_classes) probabilities, as core.serve.classifier scores them."""

    def __init__(self, model: ModelFile, method: str):
        super().__init__()
        self.backbone = build_backbone(model.model, model.channels)
        self.backbone.load_state_dict(model.backbone)
        self.method = method
        if method == HEAD:
            self.head = nn.Linear(model.model.dim, len(model.class_names))
            self.head.load_state_dict(model.head)
        else:
            labelled = model.labelled
            bank = F.normalize(model.embeddings.float()[labelled], dim=1)  # (M, D)
            self.register_buffer("bank", bank)
            self.register_buffer("votes", F.one_hot(model.labels[labelled], len(model.class_names)).float())  # (M, C)
            self.k, self.temperature = min(model.knn_k, len(labelled)), model.knn_temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(to_model_input(pixels))  # (N, D)
        if self.method == HEAD:
            return self.head(embeddings).softmax(dim=1)
        similarity = F.normalize(embeddings, dim=1) @ self.bank.T  # (N, M)
        # core.metrics.knn_votes, with a gather in place of a scatter: (N, k) weights of the k nearest
        nearest, index = similarity.topk(self.k, dim=1)
        weights = ((nearest - nearest[:, :1]) / self.temperature).exp()
        votes = (weights.unsqueeze(2) * self.votes[index]).sum(dim=1)  # (N, k, C) -> (N, C)
        return votes / votes.sum(dim=1, keepdim=True)


def export(model: ModelFile, path: str | Path, method: str | None = None) -> Path:
    """Write `model` as an ONNX graph to `path` (`method`: HEAD or KNN; default the class head when it has one)."""
    method = method or (HEAD if model.head is not None else KNN)
    if method == HEAD and model.head is None:
        raise ValueError("this model has no class head: export its kNN vote (the default for it)")
    module = Probabilities(model, method).eval()
    example = torch.zeros(2, model.channels, model.side, model.side, dtype=torch.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=["pixels"], output_names=["probabilities"],
                          dynamic_shapes={"pixels": {0: torch.export.Dim("n")}}, opset_version=OPSET, dynamo=True,
                          verbose=False)
    return path
