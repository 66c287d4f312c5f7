"""Attribution maths over numpy callables: no TensorFlow, no server."""
import numpy as np
import pytest

from explaind.server.attributions.approximation import approximation_error, approximation_warning
from explaind.server.attributions.baselines import build_baselines
from explaind.server.attributions.blur import blurred_baseline, gaussian_blur
from explaind.server.attributions.integrated_gradients import PathJob, baseline_pairs, integrated_gradients, path_integrals
from explaind.server.attributions.interpolation import path_points
from explaind.server.attributions.segmentation import felzenszwalb
from explaind.server.attributions.selection import select_outputs
from explaind.server.attributions.shapley import ShapleyJob, estimate, prefers_exact, sampled_shapley, shapley_values
from explaind.server.attributions.smoothgrad import smooth_integrated_gradients
from explaind.server.attributions.xrai import segment_masks, xrai, xrai_regions
from explaind.server.errors import InvalidArgument

WEIGHTS = np.array([[2.0, -1.0], [0.5, 3.0], [-4.0, 1.0]])


class CubicModel:
    """f_j(x) = sum_i w_ij x_i^3: smooth, not linear, with exact gradients; counts calls."""

    def __init__(self):
        self.gradient_calls = 0

    def predict(self, inputs):
        return (inputs["x"] ** 3) @ WEIGHTS

    def gradients(self, inputs, index):
        self.gradient_calls += 1
        return {"x": 3 * inputs["x"] ** 2 * WEIGHTS[:, index].T}


@pytest.mark.parametrize("method", ["gauss_legendre", "riemann"])
def test_path_points_weights_sum_to_one(method):
    alphas, weights = path_points(7, method)
    assert np.isclose(weights.sum(), 1.0)
    assert np.all((alphas > 0) & (alphas < 1))


def test_gauss_legendre_beats_riemann_at_equal_steps():
    exact = 1 / 6.0  # integral of t^5 on [0, 1]
    errors = {m: abs(np.dot(path_points(4, m)[1], path_points(4, m)[0] ** 5) - exact) for m in ("gauss_legendre", "riemann")}
    assert errors["gauss_legendre"] < 1e-12 < errors["riemann"]


def test_integrated_gradients_is_complete_and_uses_one_gradient_call():
    model = CubicModel()
    x = np.array([1.0, -0.5, 0.8])
    baseline = {"x": np.zeros(3)}
    attributions = integrated_gradients(model.gradients, {"x": x}, [baseline], output_index=1, step_count=50)
    assert model.gradient_calls == 1
    # cubic along the path: Gauss-Legendre with 50 points is exact
    np.testing.assert_allclose(attributions["x"], x ** 3 * WEIGHTS[:, 1], rtol=1e-10)


def test_integrated_gradients_averages_baselines():
    model = CubicModel()
    x = {"x": np.array([1.0, 2.0, 0.5])}
    baselines = [{"x": np.zeros(3)}, {"x": np.ones(3)}]
    both = integrated_gradients(model.gradients, x, baselines, 0, 20)
    each = [integrated_gradients(model.gradients, x, [b], 0, 20)["x"] for b in baselines]
    np.testing.assert_allclose(both["x"], np.mean(each, axis=0))
    np.testing.assert_allclose(each[1], (x["x"] ** 3 - 1) * WEIGHTS[:, 0])


def test_non_explained_inputs_stay_fixed():
    def gradients(inputs, index):
        assert np.all(inputs["scale"] == 3.0)
        return {"x": np.repeat(inputs["scale"][:, None], 2, axis=1) * np.ones_like(inputs["x"])}

    result = integrated_gradients(gradients, {"x": np.array([1.0, 2.0]), "scale": np.array(3.0)},
                                  [{"x": np.zeros(2)}], 0, 5)
    np.testing.assert_allclose(result["x"], [3.0, 6.0])


def test_path_integrals_of_a_batch_equal_each_job_alone_and_the_exact_integral():
    """Jobs stacked (different outputs, pair counts, a fixed input beside, chunked by max_rows)
    get what each gets alone; the cubic model's IG is exact with Gauss-Legendre."""
    def gradients(inputs, index):
        return {"x": 3 * inputs["x"] ** 2 * WEIGHTS[:, index].T * inputs["scale"][:, None]}

    rng = np.random.default_rng(3)
    jobs = []
    for i in range(7):
        instance = {"x": rng.normal(size=3), "scale": np.array(1.0 + i)}
        baselines = [{"x": rng.normal(size=3)} for _ in range(1 + i % 3)]
        jobs.append(PathJob(instance, baseline_pairs(instance, baselines), i % 2))
    for noise in ({}, {"x": 0.3}):
        noisy = [PathJob(j.instance, j.pairs, j.output_index, noise, 4 if noise else 1, seed=5) for j in jobs]
        batched = path_integrals(gradients, noisy, 20, max_rows=100)
        for job, got in zip(noisy, batched):
            alone = path_integrals(gradients, [job], 20)[0]
            np.testing.assert_allclose(got["x"], alone["x"], rtol=1e-12, atol=1e-12)
            if not noise:
                x, scale = job.instance["x"], job.instance["scale"]
                exact = np.mean([(x ** 3 - b["x"] ** 3) for _, b in job.pairs], axis=0) * WEIGHTS[:, job.output_index]
                np.testing.assert_allclose(got["x"], exact * scale, rtol=1e-10)
    assert not np.allclose(batched[0]["x"], path_integrals(gradients, jobs[:1], 20)[0]["x"])


def test_smoothgrad_with_zero_noise_is_integrated_gradients_and_batches_once():
    model = CubicModel()
    x = {"x": np.array([1.0, -1.0, 0.3])}
    plain = integrated_gradients(model.gradients, x, [{"x": np.zeros(3)}], 0, 10)
    model.gradient_calls = 0
    smooth = smooth_integrated_gradients(model.gradients, x, [{"x": np.zeros(3)}], 0, {"x": 0.0}, 4, 10)
    assert model.gradient_calls == 1
    np.testing.assert_allclose(smooth["x"], plain["x"])
    noisy = smooth_integrated_gradients(model.gradients, x, [{"x": np.zeros(3)}], 0, {"x": 0.2}, 4, 10)
    assert not np.allclose(noisy["x"], plain["x"])


def test_sampled_shapley_is_exact_for_additive_models_and_needs_no_gradients():
    x = {"x": np.array([1.0, 2.0, -1.0])}

    def predict(inputs):  # additive and non-differentiable
        return np.stack([np.sign(inputs["x"]) @ np.array([1.0, 2.0, 3.0])], axis=1)

    values = sampled_shapley(predict, x, [{"x": np.zeros(3)}], 0, path_count=3)
    np.testing.assert_allclose(values["x"], [1.0, 2.0, -3.0])


def test_sampled_shapley_on_interactions_shares_the_credit():
    def predict(inputs):  # f = x0 * x1: each feature gets half of the interaction
        return (inputs["x"][:, 0] * inputs["x"][:, 1])[:, None]

    values = sampled_shapley(predict, {"x": np.array([2.0, 3.0])}, [{"x": np.zeros(2)}], 0, path_count=50,
                             rng=np.random.default_rng(1))
    np.testing.assert_allclose(values["x"].sum(), 6.0)
    np.testing.assert_allclose(values["x"], [3.0, 3.0], atol=1.0)


def _interacting(inputs):
    """A nonlinear model of 5 features with interactions, 2 outputs."""
    x = np.asarray(inputs["x"], np.float64)
    first = np.sin(x[:, 0] * x[:, 1]) + x[:, 2] ** 3 - x[:, 3] * x[:, 4] * x[:, 0]
    return np.stack([first, np.tanh(x.sum(axis=1)) * x[:, 1]], axis=1)


def test_exact_shapley_equals_enumeration_on_a_nonlinear_model():
    from tests import oracles

    x, base = np.array([0.8, -1.2, 0.5, 1.5, -0.7]), np.array([0.1, 0.2, -0.3, 0.0, 0.4])
    job = ShapleyJob({"x": x}, [{"x": base}], np.arange(5), [0, 1], path_count=7, exact=True)
    (values,) = shapley_values(_interacting, [job], max_rows=7)       # 32 coalitions over 5 model calls
    for index in (0, 1):
        mean, error = estimate(values.per_path[index], values.exact)
        oracle = oracles.shapley_by_enumeration(
            lambda coalition, index=index: _interacting(
                {"x": np.where(np.isin(np.arange(5), list(coalition)), x, base)[None]})[0, index], 5)
        np.testing.assert_allclose(mean, oracle, rtol=1e-10, atol=1e-12)
        assert error is None
    assert prefers_exact(5, 7) and not prefers_exact(5, 6) and not prefers_exact(20, 50)


def test_sampled_shapley_standard_error_matches_the_spread_over_seeds():
    """The reported standard error is what the estimate really varies by from one set of paths to another."""
    x, base = np.array([0.8, -1.2, 0.5, 1.5, -0.7]), np.zeros(5)
    jobs = [ShapleyJob({"x": x}, [{"x": base}], np.arange(5), [0], path_count=8, seed=seed) for seed in range(300)]
    estimates, errors = zip(*(estimate(v.per_path[0], v.exact) for v in shapley_values(_interacting, jobs, 4096)))
    spread, reported = np.std(estimates, axis=0, ddof=1), np.mean(errors, axis=0)
    assert spread[2] == reported[2] == 0.0              # x2 acts alone (additively): every path agrees
    interacting = [0, 1, 3, 4]
    assert np.all((0.8 < reported[interacting] / spread[interacting]) &
                  (reported[interacting] / spread[interacting] < 1.25)), (reported, spread)


def test_select_outputs_orders_top_k_by_value_and_output_indices_as_given():
    """Vertex: top_k highest first, argmax when neither is set, output_indices in the order asked."""
    scores = np.array([0.1, 0.5, 0.3, 0.05])
    assert select_outputs(scores) == [1]
    assert select_outputs(scores, top_k=2) == [1, 2]
    assert select_outputs(scores, top_k=-1) == [1, 2, 0, 3]
    assert select_outputs(scores, top_k=10) == [1, 2, 0, 3]
    assert select_outputs(scores, output_indices=[3, 0, 2]) == [3, 0, 2]
    assert select_outputs(scores, output_indices=[3, 0, 3]) == [3, 0]
    assert select_outputs(np.arange(6.0), output_indices=[[0, 1], [1, 2]], output_shape=(2, 3)) == [1, 5]
    with pytest.raises(InvalidArgument) as error:
        select_outputs(scores, output_indices=[7], field="explanation_spec_override.parameters")
    assert error.value.field == "explanation_spec_override.parameters.output_indices[0]"
    with pytest.raises(InvalidArgument):
        select_outputs(scores, top_k=-3)


def test_approximation_error_and_warning():
    assert approximation_error({"x": np.array([1.0, 1.0])}, 3.0, 1.0) == 0.0
    error = approximation_error({"x": np.array([1.0, 0.8])}, 3.0, 1.0)
    assert np.isclose(error, 0.1)
    assert "step_count" in approximation_warning(error, "integrated_gradients")
    assert "path_count" in approximation_warning(error, "sampled_shapley")
    assert approximation_warning(0.05, "integrated_gradients") is None


def test_build_baselines_broadcasts_counts_and_checks():
    shapes, dtypes = {"a": (2,), "b": (3,)}, {"a": np.float32, "b": np.float32}
    baselines = build_baselines(shapes, dtypes, {"a": ([1, [2, 3]], "f.a")})
    assert len(baselines) == 2
    np.testing.assert_array_equal(baselines[0]["a"], [1, 1])
    np.testing.assert_array_equal(baselines[1]["a"], [2, 3])
    np.testing.assert_array_equal(baselines[1]["b"], [0, 0, 0])
    with pytest.raises(InvalidArgument) as error:
        build_baselines(shapes, dtypes, {"a": ([[1, 2, 3]], "f.a")})
    assert error.value.field == "f.a[0]"
    with pytest.raises(InvalidArgument):
        build_baselines(shapes, dtypes, {"a": ([0], "f.a"), "b": ([0, 1], "f.b")})
    with pytest.raises(InvalidArgument):
        build_baselines(shapes, dtypes, {"a": ([0] * 11, "f.a")})


def test_blur_keeps_constant_images_and_smooths_edges():
    image = np.zeros((16, 16, 3))
    np.testing.assert_allclose(gaussian_blur(image + 0.5, 3.0), 0.5)
    image[:, 8:] = 1.0
    blurred = blurred_baseline(image, 2.0)
    assert 0 < blurred[5, 7, 0] < 0.5 < blurred[5, 8, 0] < 1
    np.testing.assert_allclose(blurred.sum(), image.sum(), rtol=1e-9)


def _two_region_image():
    image = np.zeros((20, 20, 3))
    image[4:12, 4:12] = [1.0, 0.2, 0.2]
    return image


def test_felzenszwalb_separates_a_square_from_the_background():
    labels = felzenszwalb(_two_region_image() * 255, scale=100, min_size=5)
    assert labels[6, 6] != labels[16, 16]
    assert len(np.unique(labels[5:11, 5:11])) == 1


def test_xrai_ranks_the_region_holding_the_attribution_first():
    image = _two_region_image()
    attributions = np.random.default_rng(0).normal(0, 0.1, (20, 20))
    attributions[4:12, 4:12] += 1.0
    result = xrai(attributions, image)
    assert result.shape == (20, 20)
    assert result[6:10, 6:10].min() > np.median(result)


def test_xrai_regions_covers_every_pixel_with_decreasing_density():
    masks = np.zeros((3, 2, 2), bool)
    masks[0, 0, :] = True
    masks[1, 1, 0] = True
    masks[2] = True
    attributions = np.array([[1.0, 3.0], [5.0, -1.0]])
    np.testing.assert_allclose(xrai_regions(attributions, masks), [[2.0, 2.0], [5.0, -1.0]])


def test_segment_masks_scale_to_small_images():
    masks = segment_masks(np.random.default_rng(0).random((8, 8, 1)))
    assert masks.shape[1:] == (8, 8) and masks.any(axis=0).all()
