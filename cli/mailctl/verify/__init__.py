"""testinfra modules that prove a deployed host serves mail: used by `mailctl verify` and by
molecule's verify step. Clients run ON the host (through testinfra's ansible backend) against
127.0.0.1, verifying TLS against the mailctl CA and the host's mail name."""
