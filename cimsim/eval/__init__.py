"""Evaluation: model loading, tasks, multiple-choice scoring (encoders and causal LMs) and
accuracy on a split, for a model as it is (digital or programmed as a chip)."""
