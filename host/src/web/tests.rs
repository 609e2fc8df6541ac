//! Loading web configuration files: what Prometheus accepts loads, what it refuses is refused
//! with the key named.
