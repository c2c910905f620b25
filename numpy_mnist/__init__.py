"""numpy-mnist: chapter 4 of *Deep Learning for Coders* ("MNIST basics") with every gradient by hand.

The data flow, one module per arrow::

    data/ (host uint8 -> float32 in [0, 1])
      -> data.loader.DataLoader          (minibatches on the chosen backend)
        -> models (forward: linear, relu, ...; keeps what backward needs)
          -> losses (mnist_loss, binary / softmax cross-entropy) -> loss value
          <- losses *_backward (d loss / d logits)
        <- models backward (grads: a dict keyed exactly like model.params)
      -> opt.step(grads)                  (optim.SGD: the step that trains the parameters)
      -> metrics (batch_accuracy) -> learner history -> training (the run's edge) -> plots / cli
"""

__version__ = "0.1.0"
