"""The chip: device cards, programming a model's base weights onto tiles (one seed, one chip
instance), the tile periphery, fitting cards to measurements and the aihwkit cross-check engine."""
