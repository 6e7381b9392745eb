// Integration tests of /metrics, /healthz and /readyz (filled in by the next commit).
