//go:build !race

package netcoll

const raceEnabled = false
