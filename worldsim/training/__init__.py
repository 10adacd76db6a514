"""Training: the loop every stage shares (:mod:`~worldsim.training.loop`), the stages
(:mod:`~worldsim.training.autoencoder`, :mod:`~worldsim.training.dit`, their typed
configs in :mod:`~worldsim.training.stages`) and the experiment runner that makes the
data first (:mod:`~worldsim.training.experiment`). Nothing here knows of evaluation:
``python -m worldsim.train`` hands the runner its judge."""
