"""Training the prior: slices from volumes or raw k-space files, and score-matching training."""
