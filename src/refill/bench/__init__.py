"""`refill bench`: Refill's hot paths measured against hand-written SQL, as ratios."""
