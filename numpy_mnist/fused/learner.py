"""The book's :class:`~numpy_mnist.learner.Learner`, training and validating through the fused graph."""

from __future__ import annotations

from numpy_mnist.fused.trainer import FusedTrainer
from numpy_mnist.learner import Learner

__all__ = ["FusedLearner"]


class FusedLearner(Learner):
    """A :class:`~numpy_mnist.learner.Learner` whose epochs are replays of a CUDA graph.

    Everything but the two calls that train and validate is the Learner's own: the history, the
    epoch numbering of a resumed run, the timing, and putting the last finished epoch's parameters
    back after a divergence or Ctrl-C.  The kernels update ``model.params`` in place, so
    checkpoints and plots read the parameters where they always do.

    ``device`` is passed to :class:`~numpy_mnist.fused.trainer.FusedTrainer` (default: the GPU);
    the kernels are compiled and both graphs recorded here, before the first epoch's clock starts.
    """

    path = "fused CUDA graph"

    def __init__(self, model, train_dl, valid_dl, lr: float = 0.1, opt=None, history=None, start=None, *,
                 device=None) -> None:
        super().__init__(model, train_dl, valid_dl, lr=lr, opt=opt, history=history, start=start)
        self.trainer = FusedTrainer(model, train_dl, self.opt, valid_dl, device=device)

    def _train_epoch(self, epoch: int) -> float:
        return self.trainer.train_epoch(epoch)

    def _validate(self) -> tuple[float, float]:
        return self.trainer.validate()
