"""One input's answer and whether to accept it: the pipeline, the measured order of tiers, the cascade."""
