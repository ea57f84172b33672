"""Zoo entries of the spiking detector SPYv4 (see :mod:`fptt_ext.zoo.spyv4`).

Example:
    >>> model_card("spyv4")["paper_test_accuracy"], model_card("spyv4")["T"]
    (51.38, 4)
"""

from __future__ import annotations

from .registry import model_card, register_model  # noqa: F401
from .spyv4 import SPYv4, SPYv4Backbone

SPYV4_ARCH = ("ConvK3C32S2P1-ConvK3C64S2P1-3xCSP[ConvK3C{c}S1P1-split-ConvK3C{h}S1P1-ConvK3C{h}S1P1-cat-"
              "ConvK1C{c}S1P0-cat-MPK2S2](c=64,128,256)-ConvK3C512S1P1-ConvK1C256S1P0-ConvK3C512S1P1-Head32"
              "|ConvK1C128S1P0-Up2-cat-ConvK3C256S1P1-Head16; 19 spiking conv layers (LTC-SN), 2 conv heads "
              "of 3x(5+classes)")
ADAGRAD = {"optimizer": "adagrad", "lr": 1e-3, "batch_size": 16}  # the papers' SPYv4 optimiser
# The CPU run on synthetic shapes: Adam with one cosine led Adagrad after the same 3 epochs
# (docs/spyv4.md, docs/results/detect/)
ADAM_SYNTHETIC = {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "lr_schedule": "cosine"}
_VOC_TRAIN = ("fptt-ext train-detector --dataset voc --root VOC_DIR --model spyv4 --image-size 416 --T 4 "
              "--epochs 100 --batch-size 16 --mosaic-epochs 80 --device cuda --workers 4 --out runs/spyv4-voc")
_COUNTS = ("Parameters: 21,984,694 with neuron='ltc' (5,918,006 in the convs, heads and BNs, 8,033,344 in each "
           "of the gates gate_m and gate_adp); 13,954,454 with neuron='ltc-minus' (one conv gate per layer), "
           "which is the papers' ~14M. Spiking neurons at 416x416: 6,121,856 (papers: ~6.2M).")


@register_model(
    "spyv4", task="detection", dataset="voc07+12", encoding="image", T=4, paper_test_accuracy=51.38,
    paper_dataset="voc07+12",
    paper_metric="VOC07 test mAP@0.5, % (51.38 with 4 reads, 53.25 with 8)", architecture=SPYV4_ARCH,
    num_params=21_984_694, recipe=ADAGRAD, train_command=_VOC_TRAIN,
    description="Spiking Tiny-YOLOv4 (SPYv4): LTC-SN conv neurons, concatenation-residual CSP blocks, raw pixels "
                "as input current, the image read T times; FPTT update per read. " + _COUNTS)
def spyv4(neuron: str = "ltc", backend: str = "snntorch", num_classes: int = 20, width: float = 1.0,
          step_mode: str = "s"):
    return SPYv4(num_classes=num_classes, width=width, neuron=neuron, backend=backend, step_mode=step_mode)


@register_model(
    "spyv4_tiny", task="detection", dataset="synthetic-shapes", encoding="image", T=4, paper_test_accuracy=51.38,
    paper_dataset="voc07+12",
    paper_metric="VOC07 test mAP@0.5, % (of the full-width spyv4; this variant is for CPU runs)",
    architecture=SPYV4_ARCH + " at width 0.25", num_params=1_379_908, recipe=ADAM_SYNTHETIC,
    train_command="fptt-ext train-detector --dataset synthetic --model spyv4_tiny --image-size 128 --T 4 --epochs 10 "
                  "--n-train 4000 --batch-size 16 --optimizer adam --lr 1e-3 --lr-schedule cosine --mosaic-epochs 3 "
                  "--eval-every 2 --threads 1 --out runs/spyv4-synthetic",
    variant="spyv4 at width 0.25 (every spiking layer a quarter as wide; the layer pattern, neurons, heads and "
            "anchors unchanged); num_params is for 5 classes (the synthetic shapes set)",
    description="Reduced-width SPYv4 that trains on a CPU on the synthetic shapes set (fptt_ext.data.synthetic); "
                "its checkpoint, trained by train_command, is scored on 500 synthetic test images (docs/spyv4.md)")
def spyv4_tiny(neuron: str = "ltc", backend: str = "snntorch", num_classes: int = 5, step_mode: str = "s"):
    return SPYv4(num_classes=num_classes, width=0.25, neuron=neuron, backend=backend, step_mode=step_mode)


@register_model(
    "spyv4_backbone", task="features", dataset="voc07+12", encoding="image", T=4, paper_test_accuracy=None,
    paper_metric="(a feature extractor: no metric of its own)", architecture=SPYV4_ARCH.split("-ConvK3C512")[0],
    num_params=5_238_048, recipe=ADAGRAD, train_command=_VOC_TRAIN,
    description="The spiking CSP backbone of SPYv4 (14 LTC-SN conv layers): image -> binary spike features at "
                "stride 32, 512*width channels")
def spyv4_backbone(neuron: str = "ltc", backend: str = "snntorch", width: float = 1.0, step_mode: str = "s"):
    return SPYv4Backbone(width=width, neuron=neuron, backend=backend, step_mode=step_mode)
