// Package deploy holds no code: it is the configuration Loom ships for
// Prometheus, Grafana and systemd. Its tests check that the Grafana
// provisioning files and dashboards fit together, so that deploy/ works as
// it is copied.
package deploy
