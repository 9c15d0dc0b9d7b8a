"""Training of the learned particle segmenter (:mod:`semqa.particles.learned`)."""
