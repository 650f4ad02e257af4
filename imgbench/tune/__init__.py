"""`imgbench tune`: each server's tunable knobs (``imgbench.servers``) searched under a p99 SLO.

- ``search``: the strategies (hill-climb, grid) over a ``measure(config)`` callable, bounded by a
  time budget; pure, so it is tested with a synthetic server;
- ``configs``: a configuration rendered as the files each server reads (config.pbtxt, batching
  parameters, TorchServe's model config);
- ``runner``: one probe = the server restarted on a scratch repository holding the configuration,
  then one closed-loop point of the load generator; results are ``imgbench.load_results`` records.
"""
