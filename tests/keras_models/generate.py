"""Write the Keras models of this folder: real `model.to_json()` exports of compiled Keras 3
models, one (at least) per row of docs/keras.md's layers, losses and metrics.

    KERAS_BACKEND=torch python -m tests.keras_models.generate

Each export is `<name>.json`; `CASES` says what each holds, the data it trains on, and
whether its run can be compared with Keras' step by step (no random noise in training).
The tests read the files and this module's `CASES`; Keras is needed only to regenerate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FEATURES = 6
IMAGE = (2, 3)  # an input that a Flatten (or a Reshape) makes rows of 6


@dataclass(frozen=True)
class Case:
    """One Keras model: its layers (a function of the keras module), how it compiles, and
    its targets: "classes" (3 classes, indices), "onehot" (3), "classes8" and "onehot8"
    (8 classes, for the top-5 accuracies), "binary" (0/1, one column), "signed" (−1/1),
    "values" (2 columns), "positive" (counts, 1 column), "distribution" (3
    probabilities)."""

    layers: Callable[[Any], list[Any]]
    loss: Callable[[Any], Any]
    targets: str
    metrics: Callable[[Any], list[Any]] = lambda keras: []
    image: bool = False  # the input is IMAGE, not FEATURES
    random: bool = False  # training draws noise: compare predictions, not runs
    refused: str | None = None  # the words of fitq's refusal
    functional: bool = False  # a Functional model of the same layers, not a Sequential


def _dense_out(keras: Any, targets: str) -> Any:
    units, activation = {
        "classes": (3, "softmax"),
        "onehot": (3, "softmax"),
        "classes8": (8, "softmax"),
        "onehot8": (8, "softmax"),
        "binary": (1, "sigmoid"),
        "multilabel": (3, "sigmoid"),
        "signed": (1, "tanh"),
        "values": (2, None),
        "positive": (1, "softplus"),
        "distribution": (3, "softmax"),
    }[targets]
    return keras.layers.Dense(units, activation=activation)


def _mlp(*middle: Callable[[Any], Any], targets: str = "classes") -> Callable[[Any], list[Any]]:
    """Dense(8) → the middle layers → the output layer for the targets."""

    def layers(keras: Any) -> list[Any]:
        return [
            keras.layers.Dense(8),
            *[make(keras) for make in middle],
            _dense_out(keras, targets),
        ]

    return layers


def scce(keras: Any) -> Any:
    return "sparse_categorical_crossentropy"


def _frozen(layer: Any) -> Any:
    layer.trainable = False
    return layer


CASES: dict[str, Case] = {
    # ---------------------------------------------------------------- layers
    "dense": Case(
        lambda k: [
            k.layers.Dense(8, "gelu", kernel_regularizer=k.regularizers.L1L2(1e-3, 1e-2)),
            k.layers.Dense(8, activation="swish", use_bias=False,
                           kernel_initializer="he_normal", bias_initializer="ones"),
            k.layers.Dense(3, activation="softmax"),
        ],
        scce, "classes", lambda k: ["accuracy"],
    ),
    "activation": Case(_mlp(lambda k: k.layers.Activation("tanh")), scce, "classes"),
    "dropout": Case(_mlp(lambda k: k.layers.Dropout(0.3)), scce, "classes", random=True),
    "batch_normalization": Case(
        _mlp(lambda k: k.layers.BatchNormalization(momentum=0.9)), scce, "classes"
    ),
    "layer_normalization": Case(_mlp(lambda k: k.layers.LayerNormalization()), scce, "classes"),
    "relu": Case(
        _mlp(lambda k: k.layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.2)),
        scce, "classes",
    ),
    "leaky_relu": Case(_mlp(lambda k: k.layers.LeakyReLU(negative_slope=0.1)), scce, "classes"),
    "elu": Case(_mlp(lambda k: k.layers.ELU(alpha=0.5)), scce, "classes"),
    "prelu": Case(_mlp(lambda k: k.layers.PReLU()), scce, "classes"),
    "softmax": Case(
        lambda k: [k.layers.Dense(8, "relu"), k.layers.Dense(3), k.layers.Softmax()],
        scce, "classes",
    ),
    "flatten": Case(
        lambda k: [k.layers.Rescaling(0.5), k.layers.Flatten(), k.layers.Dense(8, "relu"),
                   k.layers.Dense(3, activation="softmax")],
        scce, "classes", image=True,
    ),
    "reshape": Case(
        lambda k: [k.layers.Reshape((6,)), k.layers.Dense(8, "relu"),
                   k.layers.Dense(3, activation="softmax")],
        scce, "classes", image=True,
    ),
    "rescaling": Case(
        lambda k: [k.layers.Rescaling(0.5, offset=0.1), *_mlp()(k)], scce, "classes"
    ),
    "normalization": Case(
        lambda k: [
            k.layers.Normalization(mean=[0.1, -0.2, 0.3, 0.0, 1.0, -1.0],
                                   variance=[1.0, 4.0, 0.25, 2.0, 1.0, 9.0]),
            *_mlp()(k),
        ],
        scce, "classes",
    ),
    "gaussian_noise": Case(
        _mlp(lambda k: k.layers.GaussianNoise(0.1)), scce, "classes", random=True
    ),
    "gaussian_dropout": Case(
        _mlp(lambda k: k.layers.GaussianDropout(0.2)), scce, "classes", random=True
    ),
    "alpha_dropout": Case(
        lambda k: [k.layers.Dense(8, activation="selu"), k.layers.AlphaDropout(0.2),
                   k.layers.Dense(3, activation="softmax")],
        scce, "classes", random=True,
    ),
    "activity_regularization": Case(
        _mlp(lambda k: k.layers.ActivityRegularization(l1=0.01, l2=0.01)), scce, "classes"
    ),
    "constraints": Case(
        lambda k: [
            k.layers.Dense(8, "relu", kernel_constraint=k.constraints.MaxNorm(1.0),
                           bias_constraint=k.constraints.NonNeg()),
            k.layers.Dense(8, "relu", kernel_constraint=k.constraints.UnitNorm(axis=0)),
            k.layers.Dense(3, "softmax",
                           kernel_constraint=k.constraints.MinMaxNorm(0.5, 1.0, rate=0.5)),
        ],
        scce, "classes",
    ),
    # refused, with the reason
    "normalization_adapted": Case(
        lambda k: [k.layers.Normalization(), *_mlp()(k)],
        scce, "classes", refused="gets its statistics from adapt()",
    ),
    "prelu_shared_axes": Case(
        _mlp(lambda k: k.layers.PReLU(shared_axes=[1])),
        scce, "classes", refused="shared_axes=[1] is not supported",
    ),
    "dense_activity_regularizer": Case(
        lambda k: [k.layers.Dense(8, activity_regularizer="l2"), *_mlp()(k)],
        scce, "classes", refused="activity_regularizer",
    ),
    "unit_normalization": Case(
        _mlp(lambda k: k.layers.UnitNormalization()), scce, "classes",
        refused="UnitNormalization 'unit_normalization') is not supported",
    ),
    "embedding": Case(
        lambda k: [k.layers.Embedding(10, 4), k.layers.Flatten(), *_mlp()(k)],
        scce, "classes", refused="Embedding 'embedding') is not supported",
    ),
    "identity": Case(_mlp(lambda k: k.layers.Identity()), scce, "classes"),
    "dense_bias_regularizer": Case(
        lambda k: [k.layers.Dense(8, bias_regularizer="l2"), *_mlp()(k)],
        scce, "classes", refused='bias_regularizer={"module"',
    ),
    "dense_before_flatten": Case(
        lambda k: [k.layers.Dense(4), k.layers.Flatten(), *_mlp()(k)],
        scce, "classes", image=True, refused="a dense layer on the 2-dimensional input (2, 3)",
    ),
    "reshape_to_two_axes": Case(
        lambda k: [k.layers.Reshape((3, 2)), k.layers.Flatten(), *_mlp()(k)],
        scce, "classes", image=True, refused="only a Reshape to one axis",
    ),
    "spatial_dropout": Case(
        lambda k: [k.layers.SpatialDropout1D(0.2), k.layers.Flatten(), *_mlp()(k)],
        scce, "classes", image=True,
        refused="SpatialDropout1D 'spatial_dropout1d') is not supported",
    ),
    "permute": Case(
        lambda k: [k.layers.Permute((2, 1)), k.layers.Flatten(), *_mlp()(k)],
        scce, "classes", image=True, refused="Permute 'permute') is not supported",
    ),
    "discretization": Case(
        lambda k: [k.layers.Discretization(bin_boundaries=[0.0, 1.0]), *_mlp()(k)],
        scce, "classes", refused="Discretization 'discretization') is not supported",
    ),
    "frozen_layer": Case(
        lambda k: [_frozen(k.layers.Dense(8)), *_mlp()(k)],
        scce, "classes", refused="a frozen layer (trainable: false) is not supported",
    ),
    "functional": Case(
        _mlp(), scce, "classes", functional=True, refused="only Sequential models",
    ),
    # ---------------------------------------------------------------- losses and metrics
    "sparse_categorical_crossentropy": Case(
        _mlp(targets="classes8"), scce, "classes8",
        lambda k: ["accuracy", "sparse_categorical_accuracy",
                   k.metrics.SparseTopKCategoricalAccuracy(k=5)],
    ),
    "categorical_crossentropy": Case(
        _mlp(targets="onehot8"),
        lambda k: k.losses.CategoricalCrossentropy(label_smoothing=0.1), "onehot8",
        lambda k: ["categorical_accuracy", "top_k_categorical_accuracy", "auc", "precision"],
    ),
    "binary_crossentropy": Case(
        _mlp(targets="binary"),
        lambda k: k.losses.BinaryCrossentropy(label_smoothing=0.1), "binary",
        lambda k: ["binary_accuracy", k.metrics.Precision(), k.metrics.Recall(),
                   k.metrics.AUC()],
    ),
    "binary_crossentropy_multilabel": Case(  # fitq's datasets hold one label column
        _mlp(targets="multilabel"), lambda k: "binary_crossentropy", "multilabel",
        lambda k: ["binary_accuracy"], refused="binary_crossentropy takes 1 output unit",
    ),
    "binary_focal_crossentropy": Case(
        _mlp(targets="binary"),
        lambda k: k.losses.BinaryFocalCrossentropy(apply_class_balancing=True, gamma=1.5),
        "binary", lambda k: ["accuracy", "auc"],
    ),
    "categorical_focal_crossentropy": Case(
        _mlp(targets="onehot"),
        lambda k: k.losses.CategoricalFocalCrossentropy(label_smoothing=0.05), "onehot",
        lambda k: ["accuracy"],
    ),
    "mean_squared_error": Case(
        _mlp(targets="values"), lambda k: "mse", "values",
        lambda k: ["mae", "mse", k.metrics.RootMeanSquaredError()],
    ),
    "mean_absolute_error": Case(_mlp(targets="values"), lambda k: "mae", "values"),
    "huber": Case(_mlp(targets="values"), lambda k: k.losses.Huber(delta=0.5), "values"),
    "mean_absolute_percentage_error": Case(_mlp(targets="values"), lambda k: "mape", "values"),
    "mean_squared_logarithmic_error": Case(
        _mlp(targets="positive"), lambda k: "msle", "positive"
    ),
    "log_cosh": Case(_mlp(targets="values"), lambda k: "log_cosh", "values"),
    "kl_divergence": Case(_mlp(targets="distribution"), lambda k: "kld", "distribution"),
    "poisson": Case(_mlp(targets="positive"), lambda k: "poisson", "positive"),
    "hinge": Case(_mlp(targets="signed"), lambda k: "hinge", "signed", lambda k: ["mae"]),
    "squared_hinge": Case(
        _mlp(targets="binary"), lambda k: "squared_hinge", "binary", lambda k: ["accuracy"]
    ),
    "categorical_hinge": Case(
        lambda k: [k.layers.Dense(8, "relu"), k.layers.Dense(3)],
        lambda k: "categorical_hinge", "onehot", lambda k: ["categorical_accuracy"],
    ),
    "cosine_similarity": Case(
        _mlp(targets="values"), lambda k: k.losses.CosineSimilarity(), "values",
        refused="unknown loss 'CosineSimilarity'",
    ),
    "dice": Case(
        _mlp(targets="binary"), lambda k: k.losses.Dice(), "binary",
        refused="unknown loss 'Dice'",
    ),
    "loss_reduction_sum": Case(
        _mlp(targets="values"), lambda k: k.losses.Huber(reduction="sum"), "values",
        refused='reduction="sum" is not supported',
    ),
    "true_positives": Case(
        _mlp(targets="binary"), lambda k: "binary_crossentropy", "binary",
        lambda k: [k.metrics.TruePositives()], refused="unknown metric 'TruePositives'",
    ),
    "mape_metric": Case(
        _mlp(targets="values"), lambda k: "mse", "values",
        lambda k: [k.metrics.MeanAbsolutePercentageError()],
        refused="unknown metric 'MeanAbsolutePercentageError'",
    ),
    "mean_iou": Case(
        _mlp(targets="classes"), scce, "classes",
        lambda k: [k.metrics.MeanIoU(num_classes=3)], refused="unknown metric 'MeanIoU'",
    ),
    "auc_pr": Case(
        _mlp(targets="binary"), lambda k: "binary_crossentropy", "binary",
        lambda k: [k.metrics.AUC(curve="PR")], refused='AUC(curve="PR") is not supported',
    ),
}  # fmt: skip


def export(keras: Any, case: Case) -> str:
    """The compiled model's to_json(), with SGD (the optimizers are tested apart)."""
    shape = IMAGE if case.image else (FEATURES,)
    inputs = [keras.Input(shape=shape)]
    if case.refused and "Embedding" in case.refused:
        inputs = [keras.Input(shape=(FEATURES,), dtype="int32")]
    if case.functional:
        h = inputs[0]
        for layer in case.layers(keras):
            h = layer(h)
        model = keras.Model(inputs[0], h)
    else:
        model = keras.Sequential([*inputs, *case.layers(keras)])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05),
        loss=case.loss(keras),
        metrics=case.metrics(keras),
    )
    return str(model.to_json(indent=1))


def main() -> None:
    import keras

    for name, case in CASES.items():
        (HERE / f"{name}.json").write_text(export(keras, case) + "\n")
        print(name)


if __name__ == "__main__":
    main()
