"""Per-school counts: pure folding rules and the Faust table that holds them."""
