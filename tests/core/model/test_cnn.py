"""The reference CNN: ResNet-18 with a small-image stem behind the ViT's backbone interface."""
import dataclasses

import pytest
import torch

from core.config import ModelConfig
from core.model.backbone import Backbone, build_backbone, embed


def test_a_resnet18_backbone_keeps_small_images_whole_and_embeds_in_512_dimensions():
    config = ModelConfig(arch="resnet18", dim=512)
    cnn = build_backbone(config, channels=1)
    assert cnn.net.conv1.stride == (1, 1) and isinstance(cnn.net.maxpool, torch.nn.Identity)
    features = {}
    cnn.net.layer4.register_forward_hook(lambda _m, _a, out: features.update(shape=tuple(out.shape)))
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 512)
    assert features["shape"] == (2, 512, 4, 4)  # 28 -> 28, 14, 7, 4: no ImageNet stem shrinking it to 1x1
    assert embed(cnn, torch.zeros(3, 1, 28, 28, dtype=torch.uint8)).shape == (3, 512)
    bigger = build_backbone(dataclasses.replace(config, image_size=56), channels=1)
    bigger.load_pretrained(cnn.state_dict())  # a CNN's weights fit any side
    assert bigger(torch.zeros(1, 1, 56, 56)).shape == (1, 512)
    assert isinstance(build_backbone(ModelConfig(), channels=1), Backbone)  # the ViT stays the default


def test_a_resnet18_config_must_say_its_embedding_width():
    with pytest.raises(ValueError, match="set model.dim to 512"):
        ModelConfig(arch="resnet18")
    with pytest.raises(ValueError, match="model.arch must be one of"):
        ModelConfig(arch="vgg")


def test_the_trainer_trains_the_cnn_with_the_supervised_recipe():
    import threading

    from core import events as ev
    from core.config import AugmentConfig, TrainConfig
    from core.trainer.loop import Trainer
    from tests.core.data.test_labels import _data

    config = TrainConfig(dataset="toy", objective="supervised", epochs=2, warmup_epochs=0, batch_size=12,
                         model=ModelConfig(arch="resnet18", dim=512, image_size=14, patch_size=7),
                         augment=AugmentConfig(n_global=1, global_size=14, n_local=0, local_size=14), knn_k=5)
    seen, data = [], _data()
    trainer = Trainer(config, data)
    outcome = trainer.run(seen.append, threading.Event())
    assert isinstance(outcome, ev.Finished) and outcome.reason == "completed" and outcome.step == 6
    assert outcome.test_top1 is not None and 0 <= outcome.knn_top1 <= 1
    from PIL import Image

    from core.serve.classifier import Classifier
    from core.serve.model_file import ModelFile
    classifier = Classifier(ModelFile.from_checkpoint(trainer.checkpoint(), data.train))  # a CNN travels too
    answer = classifier.classify(Image.fromarray(data.test.images[0, 0].numpy()))
    assert answer.method.startswith("fine-tuned class head") and not answer.attention.any()  # no attention map
