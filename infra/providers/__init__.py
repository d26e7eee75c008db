"""Compute adapters: aws (boto3), hetzner (hcloud), lab (local processes)."""
