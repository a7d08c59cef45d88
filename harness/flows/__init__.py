"""Flows the harness runs: the contract every flow follows (`contract`), your own
`FUNCTION(source, sink)` (`user`), bot detection (`bots`) and a pass-through that
measures the harness's own share (`passthrough`)."""
