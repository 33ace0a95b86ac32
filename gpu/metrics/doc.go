// Package metrics exports GPU samples to Prometheus under the DCGM
// exporter's metric names and labels, so that NVIDIA's dashboards work on
// a Loom node unchanged. NewCollector reads any gpu.Sampler at every
// scrape and labels each GPU with the job and user that hold it.
package metrics
