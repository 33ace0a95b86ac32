// Package pki is the cluster CA, role certificates and mutual TLS between
// Loom daemons.
package pki
