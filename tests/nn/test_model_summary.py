"""Model.summary(): one row per layer with its output shape and parameter count, and the totals
of trainable and non-trainable parameters (issue 9, item 7)."""

from graphc import nn


def small_model(**kw):
    net = nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(3)], name="mlp")
    return nn.Model(net, input_shape=(5,), optimizer="adam", name="m", backend="reference", **kw)


SMALL = """\
Model "m" (loss cross_entropy, optimizer Adam)
Layer (type)         Output shape  Params
=========================================
x (input)            (batch, 5)         0
mlp/dense (Dense)    (batch, 4)        24
mlp/dense_1 (Dense)  (batch, 3)        15
=========================================
Total params: 39
Trainable params: 39
Non-trainable params: 0"""


def test_summary_of_a_small_model_is_exact():
    assert small_model().summary() == SMALL


CNN = """\
Model "c" (loss cross_entropy, optimizer SGD)
Layer (type)                Output shape      Params
====================================================
x (input)                   (batch, 1, 4, 4)       0
cnn/conv2d (Conv2D)         (batch, 2, 4, 4)      20
cnn/batch_norm (BatchNorm)  (batch, 2, 4, 4)       8
cnn/relu (Activation)       (batch, 2, 4, 4)       0
cnn/max_pool2d (MaxPool2D)  (batch, 2, 2, 2)       0
cnn/flatten (Flatten)       (batch, 8)             0
cnn/dropout (Dropout)       (batch, 8)             0
cnn/linear (Activation)     (batch, 8)             0
cnn/dense (Dense)           (batch, 3)            27
====================================================
Total params: 55
Trainable params: 51
Non-trainable params: 4"""


def test_conv_batchnorm_model_counts_running_statistics_as_non_trainable_and_shows_each_shape():
    net = nn.Sequential([
        nn.Conv2D(2, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Activation("linear"), nn.Dense(3),
    ], name="cnn")  # fmt: skip
    model = nn.Model(net, input_shape=(1, 4, 4), optimizer="sgd", name="c", backend="reference")
    assert model.summary() == CNN


def test_a_loaded_model_lists_its_layers_by_scope_with_the_same_counts(tmp_path):
    model = small_model()
    model.save(tmp_path / "ckpt")
    loaded = nn.Model.load(tmp_path / "ckpt", backend="reference")
    lines = loaded.summary().splitlines()
    assert lines[3:6] == ["x (input)     (batch, 5)         0", "mlp/dense     (batch, 4)        24",
                          "mlp/dense_1   (batch, 3)        15"]  # fmt: skip
    assert lines[-3:] == SMALL.splitlines()[-3:]
