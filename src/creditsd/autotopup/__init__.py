"""Auto top-up: a saved card recharges an account when its ``available`` credits fall
below a threshold, within a monthly cap, with at most one attempt in flight."""
