"""Frame/text encoders for TFVTG, created by name (``create_encoder``) or from a local checkpoint directory."""
