"""The artifact bucket: ArtifactStore, object keys and spec hashes, S3 settings."""
