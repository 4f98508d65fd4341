"""The front door: a delivery verified, shape-checked, recorded and acked; its workspace and its
token found."""
