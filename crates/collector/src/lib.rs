//! Agent/gateway trace pipeline from OpenTelemetry-Collector-style YAML: receivers, processors (sampling, batching, attributes), exporters with queues and retries. (being built).
