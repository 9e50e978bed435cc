// Package node is the composition root of a shoal server node: it builds
// the cluster member from configuration, serves the HTTP API (public v1
// endpoints, the cluster's internal endpoints, /healthz and /metrics) and
// owns the lifecycle: Run starts everything and shuts it down in order.
package node
