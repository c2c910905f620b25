"""The book's :class:`~numpy_mnist.learner.Learner`, training and validating through the fused graph."""

from __future__ import annotations

from numpy_mnist.fused.trainer import FusedTrainer
from numpy_mnist.learner import Learner

__all__ = ["FusedLearner"]


class FusedLearner(Learner):
    """A :class:`~numpy_mnist.learner.Learner` whose epochs are replays of a CUDA graph.

    Everything but the two calls that train and validate is the Learner's own: the history, the
    epoch numbering of a resumed run, the loader's epoch, the timing.  The kernels update
    ``model.params`` in place, so checkpoints, plots and :func:`numpy_mnist.training.fit` (which
    puts the last finished epoch back after a divergence or Ctrl-C) find the parameters where they
    always do.  ``opt`` must be plain :class:`~numpy_mnist.optim.SGD`, the step the kernels take.

    ``device`` is passed to :class:`~numpy_mnist.fused.trainer.FusedTrainer` (default: the GPU);
    the kernels are compiled and both graphs recorded here, before the first epoch's clock starts.
    """

    path = "fused CUDA graph"

    def __init__(self, model, train_dl, valid_dl, opt, history=None, start=None, *, device=None) -> None:
        super().__init__(model, train_dl, valid_dl, opt, history=history, start=start)
        self.trainer = FusedTrainer(model, train_dl, self.opt, valid_dl, device=device)

    def _train_epoch(self, epoch: int) -> float:
        return self.trainer.train_epoch(epoch)

    def _validate(self) -> tuple[float, float]:
        return self.trainer.validate()
