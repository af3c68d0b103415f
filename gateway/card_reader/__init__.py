"""The card-reader door: a TCP listener for clinic card readers, and a reader client to drive it."""
