"""Pictures: the figure builders behind the PNGs and the notebook."""

import numpy as np
import pytest

from numpy_mnist.errors import InputError
from numpy_mnist.plots import SIGNED_LABEL, figure_png, images_figure, save_figure

PNG = b"\x89PNG\r\n\x1a\n"


def test_images_figure_draws_each_picture_once_and_closes_into_png():
    rng = np.random.default_rng(0)
    fig = images_figure([rng.random(784), rng.random((28, 28)), rng.random((784, 1))], ["a", "b", "c"], ncols=2)
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 3 and [ax.get_title() for ax in drawn] == ["a", "b", "c"]
    assert all(ax.images[0].get_array().shape == (28, 28) for ax in drawn)
    png = figure_png(fig, dpi=40)
    assert png.startswith(PNG)


def test_symmetric_pictures_share_one_scale_centred_on_zero():
    fig = images_figure([np.full(784, 0.5), np.full(784, -2.0)], symmetric=True)
    limits = {ax.images[0].get_clim() for ax in fig.axes if ax.images}
    assert limits == {(-2.0, 2.0)}
    figure_png(fig)
    own = images_figure([np.full(784, 0.5), np.full(784, -2.0)], symmetric=True, shared=False)
    assert [ax.images[0].get_clim() for ax in own.axes if ax.images] == [(-0.5, 0.5), (-2.0, 2.0)]
    figure_png(own)


def _bars(fig) -> list:
    """The colour bars' axes: those holding no picture but a colour scale."""
    return [ax for ax in fig.axes if not ax.images and ax.collections]


def test_signed_pictures_get_a_labelled_linear_colour_bar_from_minus_m_to_m():
    fig = images_figure([np.full(784, 0.5), np.linspace(-3.0, 1.0, 784)], symmetric=True)
    (bar,) = _bars(fig)
    assert bar.get_ylim() == pytest.approx((-3.0, 3.0))
    assert bar.get_yscale() == "linear" and bar.get_ylabel() == SIGNED_LABEL
    figure_png(fig)
    own = images_figure([np.full(784, 0.5), np.full(784, -2.0)], symmetric=True, shared=False)
    assert [b.get_ylim() for b in _bars(own)] == [pytest.approx((-0.5, 0.5)), pytest.approx((-2.0, 2.0))]
    figure_png(own)
    assert _bars(images_figure([np.zeros(784)])) == []


def test_images_figure_refuses_nothing_and_wrong_sizes():
    with pytest.raises(InputError):
        images_figure([])
    with pytest.raises(InputError, match="784 values"):
        images_figure([np.zeros(10)])


def test_save_figure_writes_the_png_bytes(tmp_path):
    path = save_figure(images_figure([np.zeros(784)]), tmp_path / "x.png")
    assert path.read_bytes().startswith(PNG)
