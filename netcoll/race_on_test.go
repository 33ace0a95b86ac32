//go:build race

package netcoll

// raceEnabled: under the race detector (10-20× slower) the correctness
// matrix uses its short sizes; the plain run covers the large ones.
const raceEnabled = true
