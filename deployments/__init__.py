"""What `prefect.yaml` relies on: work pools, global concurrency limits, the gate-notification
automation and its webhook block, and how a worker is started. `reelflow deploy` applies them."""
