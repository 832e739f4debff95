"""Benchmark function ``image-inference``: classify one generated image with a ResNet-50.

The network has ResNet-50's architecture (He et al. 2016: a 7x7 stem, bottleneck stages of 3, 4, 6
and 3 blocks with 64..512 channels times 4, global pooling, a 1000-way classifier; 25.6 M parameters)
with *random* weights drawn from a fixed seed: no weights can be downloaded, and the cost of a forward
pass does not depend on the weights' values. It is built once per container, so the cold start pays
for importing torch and allocating the model, as a real inference function does.

CPU-friendly settings (documented in docs/localwhisk.md): batch 1, input ``resolution`` x
``resolution`` (default 160 instead of ImageNet's 224: about half the FLOPs), ``threads`` torch
threads (default 1: one invocation uses about one core, like the other functions).
Parameters: ``resolution`` (32..448), ``threads`` (1..8), ``seed`` (default 0, the image).
Dependency: ``torch`` (CPU build).
"""

import time

import torch
from torch import nn


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride):
        super().__init__()
        out_channels = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def _resnet50(classes=1000):
    layers = [
        nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]
    in_channels = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(_Bottleneck(in_channels, width, stride if i == 0 else 1))
            in_channels = width * _Bottleneck.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, classes)]
    return nn.Sequential(*layers)


torch.manual_seed(0)
_MODEL = _resnet50().eval()
_PARAMETERS = sum(p.numel() for p in _MODEL.parameters())


def main(args):
    resolution = int(args.get("resolution", 160))
    threads = int(args.get("threads", 1))
    if not (32 <= resolution <= 448 and 1 <= threads <= 8):
        return {"error": f"need resolution in [32, 448] and threads in [1, 8], got {resolution} and {threads}"}
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(int(args.get("seed", 0)))
    image = torch.rand(1, 3, resolution, resolution, generator=generator)
    # ImageNet normalisation, as a real pre-processing step would do.
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    started = time.perf_counter()
    with torch.inference_mode():
        probabilities = torch.softmax(_MODEL((image - mean) / std), dim=1)[0]
    top = torch.topk(probabilities, 5)
    return {
        "resolution": resolution,
        "parameters": _PARAMETERS,
        "top5": [{"class": int(i), "p": float(p)} for p, i in zip(top.values, top.indices)],
        "forward_ms": (time.perf_counter() - started) * 1000,
    }
