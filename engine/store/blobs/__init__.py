"""Blob storage: the interface (``base``), local files in the data dir (``local``) and S3
(``s3``, loaded only when configured, so aiobotocore is imported only where it is used)."""
