"""Generated gRPC code for hilreward.proto (regenerate with `make proto`; never edit by hand)."""
