"""The study's weighted BCE from logits against a direct numpy transcription of its formula (value and
gradient), the model's logits view it trains through, and the validation metrics."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from trainables.losses import weighted_bce, weighted_bce_logits_numpy
from trainables.metrics import validation_metrics


def sigmoid_pair(z):
    """(p, 1 - p) for p = sigmoid(z), each computed directly, so both stay exact in float64 for |z| <= 40."""
    return 1.0 / (1.0 + np.exp(-z)), 1.0 / (1.0 + np.exp(z))


def transcription(y, z, beta_p, beta_n):
    """Wang et al. 2017: L = -beta_P sum_{y=1} ln p - beta_N sum_{y=0} ln(1-p), per example / C, and dL/dz."""
    n, c = y.shape
    losses, gradients = np.zeros(n), np.zeros((n, c))
    for i in range(n):
        for j in range(c):
            bp = beta_p[j] if np.ndim(beta_p) else beta_p
            bn = beta_n[j] if np.ndim(beta_n) else beta_n
            p, q = sigmoid_pair(float(z[i, j]))
            if y[i, j] == 1:
                losses[i] += -bp * np.log(p) / c
                gradients[i, j] = -bp * q / c  # d(-ln p)/dz = -(1 - p)
            else:
                losses[i] += -bn * np.log(q) / c
                gradients[i, j] = bn * p / c   # d(-ln(1 - p))/dz = p
    return losses, gradients


def keras_value_and_gradient(loss, y, z):
    import tensorflow as tf

    logits = tf.Variable(z, dtype=tf.float32)
    with tf.GradientTape() as tape:
        per_example = loss(tf.constant(y), logits)
        total = tf.reduce_sum(per_example)
    return per_example.numpy(), tape.gradient(total, logits).numpy()


@pytest.mark.parametrize("per_class", [False, True])
def test_weighted_bce_matches_the_formula_and_its_gradient_at_logits_from_minus_40_to_40(per_class):
    rng = np.random.default_rng(0)
    y = (rng.random((16, 5)) < 0.4).astype("float32")
    z = rng.uniform(-40, 40, (16, 5)).astype("float32")
    z[0, :] = [-40, -30, 0, 30, 40]  # confidently wrong and right at both ends, for both labels
    y[0, :], y[1, :] = 1, 0
    z[1, :] = z[0, :]
    beta_p = rng.uniform(1, 10, 5) if per_class else 3.7
    beta_n = rng.uniform(1, 2, 5) if per_class else 1.4
    want, want_gradient = transcription(y, z.astype("float64"), beta_p, beta_n)
    got, gradient = keras_value_and_gradient(weighted_bce(beta_p, beta_n), y, z)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # float32 atol: d/dz vanishes like e^-|z| on the right side, where float32 sigmoid rounds.
    np.testing.assert_allclose(gradient, want_gradient, rtol=1e-4, atol=1e-9)
    assert weighted_bce_logits_numpy(y, z, beta_p, beta_n) == pytest.approx(want.mean(), rel=1e-9)


def test_a_confidently_wrong_positive_costs_its_logit_and_keeps_its_gradient():
    # The clipped form gave 16.1 and a zero gradient here.
    y = np.array([[1.0, 0.0]], dtype="float32")
    z = np.array([[-30.0, 30.0]], dtype="float32")
    value, gradient = keras_value_and_gradient(weighted_bce(2.0, 1.5), y, z)
    assert value[0] == pytest.approx((2.0 * 30 + 1.5 * 30) / 2, rel=1e-6)
    assert gradient[0, 0] == pytest.approx(-2.0 / 2, rel=1e-6)   # pushes the positive's logit up
    assert gradient[0, 1] == pytest.approx(1.5 / 2, rel=1e-6)    # and the negative's down
    huge, _ = keras_value_and_gradient(weighted_bce(2.0, 1.0), y, np.array([[-1e4, 1e4]], dtype="float32"))
    assert np.isfinite(huge).all()


def test_training_through_the_logits_view_moves_the_probability_models_weights():
    import keras

    from trainables.model import logits_view

    # build_model's head (tests/test_trainables_model.py checks a real one), on a small input.
    inputs = keras.Input((3,))
    logits = keras.layers.Dense(2, dtype="float32", name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", dtype="float32", name="predictions")(logits))
    view = logits_view(model)
    head = model.get_layer("logits")
    head.kernel.assign(np.zeros((3, 2), "float32"))
    head.bias.assign(np.array([-30.0, -30.0], "float32"))  # every example: logit -30, p = 9.4e-14
    x, y = np.random.default_rng(0).normal(size=(4, 3)).astype("float32"), np.ones((4, 2), dtype="float32")
    view.compile(optimizer=keras.optimizers.SGD(0.1), loss=weighted_bce(2.0, 1.0))
    assert view.evaluate(x, y, verbose=0) == pytest.approx(2.0 * 30, rel=1e-5)
    view.fit(x, y, epochs=1, batch_size=4, verbose=0)
    # One SGD step of 0.1 x beta_P (2.0) x (1 - p) / C (2) on each bias: the gradient was there.
    np.testing.assert_allclose(np.asarray(head.bias), [-29.9, -29.9], atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), 1 / (1 + np.exp(-view.predict(x, verbose=0))), rtol=1e-5)


def test_validation_metrics_score_only_labels_with_both_classes():
    rng = np.random.default_rng(1)
    y = np.zeros((40, 3), dtype="float32")
    y[:15, 0] = 1
    y[10:30, 1] = 1  # category 2 has no positive in this fold: left out of the macro AUC
    scores = rng.random((40, 3)).astype("float32")
    metrics = validation_metrics(y, scores, ["a", "b", "c"], beta_p=2.0, beta_n=1.0)
    expected_a, expected_b = roc_auc_score(y[:, 0], scores[:, 0]), roc_auc_score(y[:, 1], scores[:, 1])
    assert metrics["val_auc_labels_scored"] == 2.0 and "val_auc_c" not in metrics
    assert metrics["val_auc_a"] == pytest.approx(expected_a)
    assert metrics["val_auc"] == pytest.approx((expected_a + expected_b) / 2)
    assert metrics["val_binary_accuracy"] == pytest.approx(((scores >= 0.5) == (y == 1)).mean())
    assert all(isinstance(value, float) for value in metrics.values())


def test_validation_loss_comes_from_logits_when_given():
    y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype="float32")
    z = np.array([[-35.0, 2.0], [0.5, 38.0]])
    p, _ = sigmoid_pair(z)
    metrics = validation_metrics(y, p, ["a", "b"], beta_p=3.0, beta_n=1.2, logits=z)
    assert metrics["val_loss"] == pytest.approx(transcription(y, z, 3.0, 1.2)[0].mean(), rel=1e-9)
